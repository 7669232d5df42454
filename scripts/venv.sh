# Sourced by the other scripts: makes .venv (once) and installs the project into it.
# Usage: ensure_venv EXTRAS   (e.g. "dev" or "" for none)
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
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
}
