#!/bin/bash
# Samples the storming server's memory every 0.5 s while it runs: VmRSS, and at the largest RSS
# seen, the mappings of /proc/PID/smaps with their Rss (anonymous vs file-backed).
# Usage: rss-sample.sh BINARY_NAME OUT_PREFIX
name=$1; out=$2; best=0
while true; do
  pid=$(pgrep -x "$name" | head -1)
  [ -z "$pid" ] && { sleep 0.2; [ -f "$out.stop" ] && break; continue; }
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status 2>/dev/null)
  [ -z "$rss" ] && continue
  echo "$(date +%T.%N | cut -c1-12) $rss $(awk '/VmHWM/{print $2}' /proc/$pid/status)" >> "$out.series"
  if [ "$rss" -gt "$best" ]; then
    best=$rss
    awk '/^[0-9a-f]+-[0-9a-f]+ /{map=$0} /^Rss:/{if ($2>256) print $2, map}' /proc/$pid/smaps 2>/dev/null | sort -rn > "$out.peak-smaps"
    cat /proc/$pid/smaps_rollup > "$out.peak-rollup" 2>/dev/null
    for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm)"; done > "$out.peak-threads"
  fi
  [ -f "$out.stop" ] && break
  sleep 0.5
done
