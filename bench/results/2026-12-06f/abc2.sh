#!/bin/bash
# abc2.sh BACKEND ROUNDS TAG GROUPS "V1 V2" [extra]: bench/results/2026-12-03c/abc.sh, and the count of the
# server's refund warnings in each run. Run from the checkout (it calls abc.sh beside its own folder).
here=$(dirname "$(readlink -f "$0")")
ABC_COUNT='refund warnings=refunded a charge whose command was not recorded' exec "$here/../2026-12-03c/abc.sh" "$@"
