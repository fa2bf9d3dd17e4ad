"""Man pages and shell completions are generated from the declarations, fresh, and valid."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "scripts" / "gen_docs.py"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    r = subprocess.run([sys.executable, GEN, "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def _files(base: Path) -> dict[str, str]:
    return {f"{d}/{p.name}": p.read_text() for d in ("man", "completions") for p in sorted((base / d).glob("*"))}


def test_committed_docs_are_fresh(generated):
    new, old = _files(generated), _files(ROOT)
    stale = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
    assert not stale, f"man pages / completions are stale ({', '.join(stale)}): run `python scripts/gen_docs.py`"


def test_generation_is_deterministic(generated, tmp_path):
    r = subprocess.run([sys.executable, GEN, "--out", tmp_path], capture_output=True, text=True)
    assert r.returncode == 0 and _files(tmp_path) == _files(generated)


def test_every_command_has_a_page_with_all_sections(generated):
    from medcli.cli.app import COMMANDS, _available

    root = (generated / "man" / "medcli.1").read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "SHARED OPTIONS", "EXIT STATUS", "ENVIRONMENT"):
        assert f".SH {section}" in root
    for var in ("MEDCLI_HOME", "MEDCLI_MODELS_PATH", "MEDCLI_OFFLINE", "MEDCLI_MODEL_URL", "MEDCLI_MAX_MEMORY", "SLURM_ARRAY_TASK_ID"):
        assert var in root
    for name, (module, _) in COMMANDS.items():
        if not _available(module):
            continue
        page = (generated / "man" / f"medcli-{name}.1").read_text()
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"):
            assert f".SH {section}" in page, (name, section)
        assert f"medcli\\-{name}(1)" in root.replace("\\fR", "").replace("\\fB", "")
    convert = (generated / "man" / "medcli-convert.1").read_text()
    assert ".SH EXAMPLES" in convert and "$ medcli convert a.nrrd \\-o \\- | medcli convert \\- \\-o b.nii.gz" in convert


@pytest.mark.skipif(not shutil.which("groff"), reason="groff is not installed")
def test_man_pages_render_without_warnings(generated):
    for page in sorted((generated / "man").glob("*.1")):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", f"{page.name}: {r.stderr}"


@pytest.mark.skipif(not shutil.which("man"), reason="man is not installed")
def test_man_renders_the_root_page():
    r = subprocess.run(["man", "-l", ROOT / "man" / "medcli.1"], capture_output=True, text=True, env={"MANPAGER": "cat", "PATH": "/usr/bin:/bin", "MANWIDTH": "80"})
    assert r.returncode == 0
    assert "EXIT STATUS" in r.stdout and "medcli-convert(1)" in r.stdout


def _complete(script: Path, cwd: Path, *words: str) -> list[str]:
    """Run the bash completion function as bash would for the command line ``words``."""
    quoted = " ".join("'" + w + "'" for w in words)
    code = f'source {script}; COMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _medcli; printf "%s\\n" "${{COMPREPLY[@]}}"'
    r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_bash_completion_is_valid_and_completes(tmp_path):
    script = ROOT / "completions" / "medcli.bash"
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    (tmp_path / "scan_01.nii.gz").write_bytes(b"")
    assert _complete(script, tmp_path, "medcli", "conv") == ["convert"]
    assert _complete(script, tmp_path, "medcli", "convert", "--dev") == ["--device"]
    assert _complete(script, tmp_path, "medcli", "convert", "--device", "") == ["auto", "cpu", "cuda", "mps"]
    assert _complete(script, tmp_path, "medcli", "convert", "scan") == ["scan_01.nii.gz"]
    assert _complete(script, tmp_path, "medcli", "convert", "x.nii", "-o", "sc") == ["scan_01.nii.gz"]
    assert _complete(script, tmp_path, "medcli", "convert", "--threads", "") == []


# Drives an interactive zsh in a pseudo-terminal, presses TAB and prints what compadd is given
# (after Valodim's zsh-capture-completion, MIT).
ZSH_CAPTURE = r"""# Print the completions zsh offers for the command line "$1" (fpath dir in $2).
zmodload zsh/zpty || exit 2
zpty z zsh -f -i
local line
setopt rcquotes
() {
    zpty -w z source $1
    repeat 4; do
        zpty -r z line
        [[ $line == ok* ]] && return
    done
    echo 'error initializing.' >&2
    exit 2
} =( <<< '
PROMPT=
fpath=('$2' $fpath)
autoload -U compinit
compinit -u -D
bindkey ''^M'' undefined
bindkey ''^J'' undefined
bindkey ''^I'' complete-word
null-line () { echo -E - $''\0'' }
compprefuncs=( null-line )
comppostfuncs=( null-line exit )
zstyle '':completion:*'' list-grouped false
zstyle '':completion:*'' insert-tab false
zstyle '':completion:*'' list-separator ''''
compadd () {
    if [[ ${@[1,-1]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return $?
    fi
    typeset -a __hits
    builtin compadd -A __hits "$@"
    [[ -n $__hits ]] || return
    for i in {1..$#__hits}; do
        echo -E - $__hits[$i]
    done
}
echo ok')
zpty -w z "$1"$'\t'
integer tog=0
while zpty -r z; do :; done | while IFS= read -r line; do
    if [[ $line == *$'\0\r' ]]; then
        (( tog++ )) && return 0 || continue
    fi
    (( tog )) && echo -E - $line
done
return 2
"""


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_completion_completes(tmp_path):
    capture = tmp_path / "capture.zsh"
    capture.write_text(ZSH_CAPTURE)
    (tmp_path / "scan_01.nii.gz").write_bytes(b"")

    def complete(line: str) -> list[str]:
        r = subprocess.run(["zsh", "-f", capture, line, ROOT / "completions"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
        return [w.strip() for w in r.stdout.splitlines() if w.strip()]

    assert complete("medcli conv") == ["convert"]
    assert complete("medcli convert --device ") == ["auto", "cpu", "cuda", "mps"]
    assert complete("medcli convert sc") == ["scan_01.nii.gz"]
    assert complete("medcli convert x.nii -o sc") == ["scan_01.nii.gz"]
    assert "--skip-existing" in complete("medcli convert --sk")


@pytest.mark.parametrize(("shell", "name"), [("zsh", "_medcli"), ("fish", "medcli.fish")])
def test_other_shells_parse_their_completion(shell, name):
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed")
    r = subprocess.run([shell, "-n", ROOT / "completions" / name], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completion_completes(tmp_path):
    (tmp_path / "scan_01.nii.gz").write_bytes(b"")
    script = ROOT / "completions" / "medcli.fish"

    def complete(line: str) -> list[str]:
        r = subprocess.run(["fish", "-c", f"source {script}; complete -C '{line}'"], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return [ln.split("\t")[0] for ln in r.stdout.splitlines()]

    assert complete("medcli conv") == ["convert"]
    assert complete("medcli convert --device ") == ["auto", "cpu", "cuda", "mps"]
    assert complete("medcli convert sc") == ["scan_01.nii.gz"]
    assert "--output" in complete("medcli convert --out")
