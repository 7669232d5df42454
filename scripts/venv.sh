# Sourced by the other scripts: makes .venv (once) and installs the project into it.
# Usage: ensure_venv EXTRAS   (e.g. "dev", or "" for none)
ensure_venv() {
    local extras="${1:-}"
    if [ ! -x .venv/bin/python ]; then
        if ! python3 -m venv .venv; then
            echo "cannot create .venv: install Python 3.11+ with venv (Debian: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    local spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    # pip is chatty; its output is shown only when it fails.
    local log
    log=$(mktemp)
    echo "installing provisioner${extras:+ with [$extras]} into .venv ..." >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip >"$log" 2>&1 ||
       ! .venv/bin/python -m pip install --disable-pip-version-check -e "$spec" >>"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "installing the Python packages failed (output above)" >&2
        exit 1
    fi
    rm -f "$log"
}
