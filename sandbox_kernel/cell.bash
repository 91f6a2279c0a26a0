# Sourced at top level for each cell (see session.bash): `return` ends the cell, `$?` is the last cell's.
if [[ -z $__sk_interrupted ]] && __sk_parse_ok; then __sk_set_status "$__sk_last_status"; eval "$__sk_code"; fi
