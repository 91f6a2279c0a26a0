# sandbox-kernel: the end of a bash that set -e is ending on an error a prompt without -e survives
# (session.bash, __sk_on_exit, sources this then): it hands the session over to a fresh bash in the
# same process, which starts with resume.bash.
#
# What a fresh bash needs to go on as this one: variables (bash's own left out; a failing function's
# locals come out global), functions, aliases, options, traps, the positional parameters. The cwd,
# exported variables, umask and limits go with the process; background jobs keep running but leave
# the job table. The state travels in a here-string (a pipe or an unlinked temporary file); the
# new bash reads it in resume.bash. If the exec fails, this bash ends as it would have.
__sk_hand_over() { # the positional parameters to keep; __sk_opts, __sk_set, __sk_traps: the options and traps
    local __sk_n __sk_state __sk_line __sk_fd
    local -a __sk_names
    (( $# )) && builtin printf -v __sk_state 'builtin set -- %s\n' "$(builtin printf '%q ' "$@")"
    builtin mapfile -t __sk_names < <(builtin compgen -v)
    for __sk_n in "${__sk_names[@]}"; do
        [[ $__sk_n =~ $__sk_bash_variables || ( $__sk_n == __sk_* && ! $__sk_n =~ $__sk_kept_variables ) ]] ||
            __sk_state+="$(builtin declare -p "$__sk_n" 2>/dev/null)"$'\n'
    done
    builtin mapfile -t __sk_names < <(builtin compgen -A function)
    for __sk_n in "${__sk_names[@]}"; do
        [[ $__sk_n == @(__sk_*|read|display|trap|exit) ]] || __sk_state+="$(builtin declare -f "$__sk_n")"$'\n'
    done
    # shopt before set: `shopt -u extdebug` turns functrace and errtrace off
    __sk_state+="$(builtin alias -p)"$'\n'"$(builtin shopt -p)"$'\n'
    while IFS= builtin read -r __sk_line; do
        case $__sk_line in  # the kernel's own options, and those the kernel keeps for the user
            *\ errexit) [[ $__sk_opts == *e* ]] && __sk_state+=$'__sk_errexit=1\n' ;;
            *\ verbose) [[ $__sk_opts == *v* ]] && __sk_state+=$'__sk_verbose=1\n' ;;
            *\ history | *\ monitor | *\ histexpand | *\ errtrace | *\ emacs | *\ vi) ;;
            *) __sk_state+=$__sk_line$'\n' ;;
        esac
    done <<< "$__sk_set"
    while IFS= builtin read -r __sk_line; do  # the kernel's own, and the user's in __sk_user_*
        [[ $__sk_line =~ \ (DEBUG|ERR|RETURN|EXIT|SIGINT)$ ]] || __sk_state+=$__sk_line$'\n'
    done <<< "$__sk_traps"
    __sk_state+="__sk_resumed=$__sk_tst"$'\n'
    [[ $(builtin jobs -p) ]] && builtin printf 'bash: the session goes on in a fresh bash (set -e ends bash on this error): its background jobs keep running but are no longer in `jobs`\n' >&2
    builtin exec {__sk_fd}<<< "$__sk_state" || return 0
    __SK_RESUME_FD=$__sk_fd builtin exec -a bash /bin/bash --noprofile --noediting --rcfile "$__sk_dir/resume.bash" -i /dev/fd/7 \
        7<"/dev/fd/$__sk_script" 4<&"$__sk_data" 5>&"$__sk_ctl" 0<&"$__sk_stdin" 6>&2 2>/dev/null \
        {__sk_data}<&- {__sk_ctl}>&- {__sk_stdin}<&- {__sk_cellfd}<&-
}
# bash's own variables, which a fresh bash sets itself
__sk_bash_variables='^(BASH|BASHOPTS|BASHPID|BASH_ALIASES|BASH_ARG(C|V|V0)|BASH_CMDS|BASH_COMMAND|BASH_EXECUTION_STRING|BASH_LINENO|BASH_REMATCH|BASH_SOURCE|BASH_SUBSHELL|BASH_VERSINFO|BASH_VERSION|BASH_XTRACEFD|BASH_MONOSECONDS|COMP_WORDBREAKS|DIRSTACK|EPOCHREALTIME|EPOCHSECONDS|EUID|FUNCNAME|GROUPS|HISTCMD|HOSTTYPE|LINENO|MACHTYPE|OSTYPE|PIPESTATUS|PPID|PWD|RANDOM|SHELLOPTS|SRANDOM|UID|_)$'
__sk_kept_variables='^__sk_(user_(debug|err|return|exit|ignored)|xtarget)$'
