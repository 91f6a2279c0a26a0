\__sk_start; \builtin eval "$__sk_wrapped" 59>&"$__sk_xtarget"
