# Sourced by an interactive login bash (bash -lic): the system's own profile has loaded
# bash-completion, which loads a command's completion the first time it is asked for, as on TAB.
# Prints "spec: ..." and, for each case, "case WORDS...: REPLIES..." (words as bash splits them:
# '=' is a word of its own).
_completion_loader retsnoop 2>/dev/null || __load_completion retsnoop
echo "spec: $(complete -p retsnoop 2>&1)"
complete_words() {
    local COMP_WORDS=(retsnoop "$@") COMP_CWORD COMP_LINE COMP_POINT COMPREPLY=()
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    # the line as typed: no blanks around '='
    COMP_LINE="${COMP_WORDS[*]}"; COMP_LINE=${COMP_LINE// = /=}; COMP_POINT=${#COMP_LINE}
    local spec func
    spec=$(complete -p retsnoop) || return
    func=$(echo "$spec" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
    # (compopt only works under a real TAB: its complaint here is noise)
    "$func" retsnoop "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
    echo "case $*: $(printf '%s\n' "${COMPREPLY[@]}" | LC_ALL=C sort | tr '\n' ' ')"
}
complete_words -c ''
complete_words -C stacks.s
complete_words -C stacks.symb-mode = ''
complete_words --conf
complete_words --lbr = any_
complete_words -e '*sys_bpf' -- bpft
