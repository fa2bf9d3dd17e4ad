#!/usr/bin/env python
"""Generate the man pages and shell completions from the command declarations.

One declaration (``@command(...)`` in ``medcli/commands/NAME.py``) gives the
``--help`` text, ``man/medcli-NAME.1`` and the bash, zsh and fish completions,
so the three can never disagree. The output is deterministic (no dates, no
terminal width, no machine paths), which lets a test check that the committed
files are fresh.

Usage::

    python scripts/gen_docs.py             # rewrite man/ and completions/
    python scripts/gen_docs.py --out DIR   # write DIR/man and DIR/completions instead
    python scripts/gen_docs.py --check     # exit 1 (and say which) when committed files are stale

Install (user-wide)::

    cp man/*.1 ~/.local/share/man/man1/
    cp completions/medcli.bash ~/.local/share/bash-completion/completions/medcli
    cp completions/_medcli ~/.zfunc/            # with fpath+=(~/.zfunc) before compinit
    cp completions/medcli.fish ~/.config/fish/completions/
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcli import __version__  # noqa: E402
from medcli.cli import app as cli_app  # noqa: E402
from medcli.cli import options as shared  # noqa: E402
from medcli.errors import EXIT_CODES  # noqa: E402

try:
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]

#: Environment variables medcli reads, documented in medcli(1) and every command page.
ENVIRONMENT: list[tuple[str, str]] = [
    ("MEDCLI_HOME", "Writable medcli folder; models are cached in $MEDCLI_HOME/models (default: the user cache folder)."),
    ("MEDCLI_MODELS_PATH", "Colon-separated read-only site folders searched for model weights before the cache "
     "(e.g. a folder that an administrator filled with 'MEDCLI_HOME=SITE medcli models pull NAME')."),
    ("MEDCLI_OFFLINE", "Set to 1 to never use the network; a missing model is then an error that says how to get it."),
    ("MEDCLI_MODEL_URL", "A mirror tried first for every model file ($MEDCLI_MODEL_URL/FILE)."),
    ("MEDCLI_REGISTRY", "Colon-separated extra registry TOML files (models of your site)."),
    ("MEDCLI_MAX_MEMORY", "Refuse images whose header claims more voxel memory than this (e.g. 32G; default 16G)."),
    ("SLURM_CPUS_PER_TASK", "Default for --threads (then OMP_NUM_THREADS, then all usable cores)."),
    ("OMP_NUM_THREADS", "Default for --threads when SLURM_CPUS_PER_TASK is not set."),
    ("SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX", "With --list: the chunk this array task processes, taken as given "
     "(0-based: submit --array=0-M)."),
    ("SGE_TASK_ID, LSB_JOBINDEX", "With --list: the chunk this array task processes; these start at 1 and are reduced by 1."),
    ("SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX", "Checked against the number of chunks: a warning says when "
     "the array misses some."),
    ("NO_COLOR", "Disable colours in help and progress bars."),
]

BATCH_TEXT = [
    "Several inputs are processed by one process (models are loaded once). An output template names each "
    "output: {stem} (input name without its image extension), {name} (input file name), {dir} (input folder) "
    "and {index} (position in the whole list, from 0; {index:04d} pads it). An output folder (existing, or ending in /) keeps the "
    "input names.",
    "--list FILE reads one input per line, optionally followed by a tab or comma and its output ('#' starts a "
    "comment; relative paths are relative to the current folder, as on the command line; '-' reads the list "
    "from stdin). With --list, an array job processes chunk N (--chunk K inputs per chunk, counting from 0) where N "
    "is --array-index or the scheduler's array variable (see ENVIRONMENT). Submit SLURM and PBS arrays as "
    "--array=0-M with M = ceil(inputs / K) - 1.",
    "Every output is checked before any work (existing outputs need --force; --skip-existing resumes a batch). "
    "A failing input is reported on stderr and the others go on; the summary line and exit status 5 tell that "
    "some failed. Outputs are written atomically: an interrupted run (Ctrl-C, SIGTERM at a time limit) leaves "
    "no partial file.",
    "'-' reads a NIfTI stream from stdin or writes one to stdout, so commands chain in pipes without temporary "
    "files. Without -o, an image command writes to stdout only when stdout is a pipe; image bytes are never "
    "written to a terminal (or, without an explicit -o -, to a redirected log file).",
]


# -- the command tree ---------------------------------------------------------------------------------


@dataclass
class Node:
    """One command of the tree: ``medcli``, ``medcli convert``, ``medcli models pull`` ..."""

    path: list[str]
    cmd: object
    spec: object | None
    children: list["Node"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(["medcli", *self.path])

    @property
    def page(self) -> str:
        return "-".join(["medcli", *self.path])

    @property
    def summary(self) -> str:
        if self.spec is not None and getattr(self.spec, "summary", ""):
            return self.spec.summary
        text = getattr(self.cmd, "short_help", None) or (getattr(self.cmd, "help", None) or "").split("\n\n")[0]
        return " ".join(text.split())

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def _context(cmd, name: str):
    return click.Context(cmd, info_name=name)


def _sub_specs(spec) -> dict[str, object]:
    subs = {}
    declared = getattr(spec, "subcommands", None) or []
    if isinstance(declared, dict):  # CommandSpec.with_subcommands: word -> spec (or a function returning it)
        subs.update({word: spec.subcommand(word) for word in declared})
    else:  # a group's list of specs (models)
        subs.update({sub.name.split()[-1]: sub for sub in declared})
    subs.update(getattr(spec, "medcli_subcommands", None) or {})
    return subs


def build_tree() -> Node:
    root = Node([], cli_app.group(), None)
    for name, (module, _summary) in cli_app.COMMANDS.items():
        if not cli_app._available(module):
            continue
        spec = importlib.import_module(module).cli
        cmd = spec.click_command()
        node = Node([name], cmd, getattr(cmd, "medcli_spec", spec))
        subs = _sub_specs(node.spec)
        subs.update(getattr(cmd, "medcli_subcommands", None) or {})
        sub_cmds = dict(getattr(cmd, "commands", None) or {})
        for sub_name, sub_spec in subs.items():
            if sub_name not in sub_cmds:
                sub_cmds[sub_name] = sub_spec.click_command()
        for sub_name, sub_cmd in sub_cmds.items():
            if getattr(sub_cmd, "hidden", False):
                continue
            sub_spec = getattr(sub_cmd, "medcli_spec", None) or subs.get(sub_name)
            node.children.append(Node([name, sub_name], sub_cmd, sub_spec))
        root.children.append(node)
    return root


@dataclass
class Opt:
    """What the documents need to know of one option or argument."""

    names: list[str]
    metavar: str
    help: str
    record: str  # help as --help prints it without rich: with [default: ...]
    panel: str
    takes_value: bool
    repeat: bool
    choices: list[str]
    files: bool


def _choices(param) -> list[str]:
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and getattr(desc, "is_choice", False) and desc.choices:
        return [str(getattr(c, "value", c)) for c in desc.choices]
    meta = param.metavar or ""
    if param.name == "device":
        return list(shared.DEVICES)
    if re.fullmatch(r"[a-z0-9_.-]+(\|[a-z0-9_.-]+)+", meta):
        return meta.split("|")
    return []


def _files(param) -> bool:
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and (getattr(desc, "is_path", False) or getattr(desc, "is_file", False)):
        return True
    meta = (param.metavar or "").upper().rstrip(".")
    if param.param_type_name == "argument":
        return not re.fullmatch(r"NAMES?", meta)  # model names are not files
    return any(w in meta for w in ("FILE", "PATH", "DIR", "FOLDER", "INPUT"))


def options_of(cmd, name: str) -> tuple[list[Opt], list[Opt]]:
    """(arguments, options) of a click command, help option included."""
    ctx = _context(cmd, name)
    args, opts = [], []
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False) or not getattr(p, "expose_value", True) and p.name not in ("help", "version"):
            continue
        help_text = " ".join((getattr(p, "help", None) or "").split())
        if p.param_type_name == "argument":
            meta = p.metavar or p.name.upper()
            args.append(Opt([meta], meta, help_text, help_text, "", True, p.nargs != 1, _choices(p), _files(p)))
            continue
        record = p.get_help_record(ctx)
        is_flag = bool(getattr(p, "is_flag", False) or getattr(p, "count", False))
        opts.append(
            Opt(
                names=list(p.opts) + list(p.secondary_opts),
                metavar="" if is_flag else (p.metavar or "VALUE"),
                help=help_text,
                record=" ".join((record[1] if record else help_text).split()),
                panel=getattr(p, "rich_help_panel", None) or "Options",
                takes_value=not is_flag,
                repeat=bool(getattr(p, "count", False) or getattr(p, "multiple", False)),
                choices=_choices(p),
                files=(not is_flag) and _files(p),
            )
        )
    return args, opts


# -- man pages ---------------------------------------------------------------------------------------------


def roff(text: str) -> str:
    """Escape plain text for roff: backslashes, minus signs, and control characters at line starts."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        lines.append("\\&" + line if line[:1] in (".", "'") else line)
    return "\n".join(lines)


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def _header(page: str, summary: str) -> list[str]:
    return [
        f'.\\" Generated by scripts/gen_docs.py from the command declarations; do not edit.',
        f'.TH "{page.upper()}" 1 "" "medcli {__version__}" "medcli manual"',
        ".nh",  # no hyphenation: option names and paths must survive copy and paste
        ".ad l",
        ".SH NAME",
        f"{roff(page)} \\- {roff(summary)}",
    ]


def _option_items(opts: list[Opt]) -> list[str]:
    out = []
    for o in opts:
        names = ", ".join(f"\\fB{roff(n)}\\fR" for n in o.names)
        meta = f" \\fI{roff(o.metavar)}\\fR" if o.metavar else ""
        out += [".TP", names + meta, roff(o.record or o.help)]
    return out


def _usage(node: Node, args: list[Opt]) -> str:
    parts = [f"\\fB{roff(node.name)}\\fR"]
    if node.children and not args:
        parts.append("\\fICOMMAND\\fR [\\fIOPTIONS\\fR]")
    else:
        parts.append("[\\fIOPTIONS\\fR]")
    for a in args:
        parts.append(f"\\fI{roff(a.metavar)}\\fR" + ("..." if a.repeat else ""))
    return " ".join(parts)


def _examples(spec) -> list[str]:
    out = []
    for desc, cmdline in getattr(spec, "examples", None) or []:
        out += [".PP", roff(desc) + ":", ".RS 4", ".nf", "$ " + roff(cmdline), ".fi", ".RE"]
    return out


def _exit_status() -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, text in EXIT_CODES.items():
        text = text[:1].upper() + text[1:]
        out += [".TP", f"\\fB{code}\\fR", roff(text if text.endswith(".") else text + ".")]
    return out


def _environment() -> list[str]:
    out = [".SH ENVIRONMENT"]
    for var, text in ENVIRONMENT:
        out += [".TP", f"\\fB{roff(var)}\\fR", roff(text)]
    return out


def command_page(node: Node) -> str:
    spec = node.spec
    args, opts = options_of(node.cmd, node.path[-1])
    lines = _header(node.page, node.summary)
    lines += [".SH SYNOPSIS", _usage(node, args)]
    for child in node.children:
        lines += [".br", f"\\fB{roff(child.name)}\\fR [\\fIOPTIONS\\fR] ..."]
    description = getattr(spec, "description", None) if spec is not None else None
    if description is None:
        description = "\n\n".join((getattr(node.cmd, "help", "") or "").split("\n\n")[1:])
    lines += [".SH DESCRIPTION", roff(node.summary)]
    for para in paragraphs(description):
        lines += [".PP", roff(para)]
    if node.children:
        lines += [".SH COMMANDS"]
        for child in node.children:
            lines += [".TP", f"\\fB{roff(child.path[-1])}\\fR", roff(child.summary) + f" See \\fB{roff(child.page)}\\fR(1)."]
    if args:
        lines += [".SH ARGUMENTS"]
        for a in args:
            lines += [".TP", f"\\fI{roff(a.metavar)}\\fR" + ("..." if a.repeat else ""), roff(a.help)]
    panels: dict[str, list[Opt]] = {}
    for o in opts:
        panels.setdefault(o.panel, []).append(o)
    lines += [".SH OPTIONS"]
    for panel, items in panels.items():
        if len(panels) > 1:
            lines += [f'.SS "{roff(panel)}"']
        lines += _option_items(items)
    if spec is not None and getattr(spec, "batch", False):
        lines += [".SH BATCH PROCESSING"]
        for para in BATCH_TEXT:
            lines += [".PP", roff(para)]
    ex = _examples(spec)
    if ex:
        lines += [".SH EXAMPLES", *ex]
    lines += _exit_status()
    lines += _environment()
    refs = list(getattr(spec, "references", None) or [])
    if refs:
        lines += [".SH REFERENCES"]
        for r in refs:
            lines += [".IP \\(bu 2", roff(r)]
    see = ["medcli"] + ([node.page.rsplit("-", 1)[0]] if len(node.path) > 1 else []) + [c.page for c in node.children]
    lines += [".SH SEE ALSO", ",\n".join(f"\\fB{roff(s)}\\fR(1)" for s in see)]
    return "\n".join(lines) + "\n"


def root_page(root: Node) -> str:
    lines = _header("medcli", cli_app.app.info.help.split("\n\n")[0] if cli_app.app.info.help else "medcli")
    lines += [
        ".SH SYNOPSIS",
        "\\fBmedcli\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIINPUT\\fR...]",
        ".br",
        "\\fBmedcli\\fR \\fB\\-\\-version\\fR",
        ".br",
        "\\fBmedcli\\fR [\\fICOMMAND\\fR] \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
    ]
    for para in paragraphs(cli_app.app.info.help or ""):
        lines += [".PP", roff(para)]
    lines += [
        ".PP",
        roff("Inputs are files (NIfTI, MGZ, NRRD, MetaImage), DICOM folders or files, '-' for stdin, or "
             "sample:NAME for the bundled samples (t1, gm, wm, ct, mr). The output format follows the output's "
             "extension. Logs and errors go to stderr; stdout carries data only."),
        ".SH COMMANDS",
    ]
    for child in root.children:
        lines += [".TP", f"\\fB{roff(child.path[-1])}\\fR", roff(child.summary) + f" See \\fB{roff(child.page)}\\fR(1)."]
    # The shared options, described once here (and repeated in every command page).
    from medcli.cli.command import command

    probe = command("example", summary="An image command.")(lambda: None)
    _, opts = options_of(probe.click_command(), "example")
    lines += [".SH SHARED OPTIONS", roff("Every image command accepts these; the others accept the common ones.")]
    for panel in (shared.BATCH_PANEL, shared.COMMON_PANEL):
        lines += [f'.SS "{roff(panel)}"'] + _option_items([o for o in opts if o.panel == panel])
    lines += [".SH BATCH PROCESSING"]
    for para in BATCH_TEXT:
        lines += [".PP", roff(para)]
    lines += [
        ".SH EXAMPLES",
        ".PP",
        "Chain commands through a pipe:",
        ".RS 4",
        ".nf",
        roff("$ medcli convert dicom_dir/ -o - | medcli convert - --reorient LPS -o t1.nrrd"),
        ".fi",
        ".RE",
        ".PP",
        "Convert a folder of images, one output per input:",
        ".RS 4",
        ".nf",
        roff("$ medcli convert raw/*.mha -o nifti/{stem}.nii.gz"),
        ".fi",
        ".RE",
        ".PP",
        "A SLURM array over a list of inputs, 10 per task (see examples/slurm_array.sh):",
        ".RS 4",
        ".nf",
        roff("$ sbatch --array=0-9 --wrap 'medcli convert --list inputs.txt --chunk 10 -o out/{stem}.nii.gz'"),
        ".fi",
        ".RE",
    ]
    lines += _exit_status()
    lines += _environment()
    lines += [".SH SEE ALSO", ",\n".join(f"\\fB{roff(n.page)}\\fR(1)" for n in root.walk() if n.path)]
    return "\n".join(lines) + "\n"


# -- completions --------------------------------------------------------------------------------------------


def _sq(text: str) -> str:
    """Single-quote for sh/zsh/fish."""
    return "'" + text.replace("'", "'\\''") + "'"


def _short(text: str, n: int = 70) -> str:
    """The first sentence of a help text, cut to ``n`` characters at a word."""
    first = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.;])\s+(?=[A-Z(])", " ".join(text.split()), maxsplit=1)[0].rstrip(".;")
    if len(first) <= n:
        return first
    return first[: n - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def bash_completion(root: Node) -> str:
    top = " ".join(c.path[-1] for c in root.children)
    out = [
        "# bash completion for medcli -- generated by scripts/gen_docs.py from the command declarations; do not edit.",
        "# Install: source this file, or copy it to ~/.local/share/bash-completion/completions/medcli",
        "",
        "_medcli_files() {",
        "    compopt -o filenames 2>/dev/null",
        '    COMPREPLY=($(compgen -f -- "$1"))',
        "}",
        "",
        "_medcli() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    COMPREPLY=()",
        "    if ((COMP_CWORD == 1)); then",
        f'        COMPREPLY=($(compgen -W "{top} --version --help -h" -- "$cur"))',
        "        return 0",
        "    fi",
        '    local path="${COMP_WORDS[1]}"',
        '    case "$path" in',
    ]
    for child in root.children:
        if child.children:
            subs = " ".join(c.path[-1] for c in child.children)
            out += [
                f"        {child.path[-1]})",
                '            if ((COMP_CWORD > 2)); then',
                '                case "${COMP_WORDS[2]}" in',
                f"                    {'|'.join(c.path[-1] for c in child.children)}) path=\"$path ${{COMP_WORDS[2]}}\" ;;",
                "                esac",
                "            fi",
            ]
            if not getattr(child.cmd, "commands", None):  # a command with an optional sub-command (harmonize fit)
                out += [
                    f'            if ((COMP_CWORD == 2)) && [[ "$cur" != -* ]]; then',
                    f'                COMPREPLY=($(compgen -W "{subs}" -- "$cur")); _medcli_files "$cur"',
                    f'                COMPREPLY+=($(compgen -W "{subs}" -- "$cur")); return 0',
                    "            fi",
                ]
            else:
                out += [
                    "            if ((COMP_CWORD == 2)); then",
                    f'                COMPREPLY=($(compgen -W "{subs} --help -h" -- "$cur")); return 0',
                    "            fi",
                ]
            out += ["            ;;"]
    out += ["    esac", '    case "$path" in']
    for node in root.walk():
        if not node.path:
            continue
        args, opts = options_of(node.cmd, node.path[-1])
        if getattr(node.cmd, "commands", None):
            continue  # a pure group: its sub-commands are handled above
        words = " ".join(n for o in opts for n in o.names)
        out += [f'        "{" ".join(node.path)}")', '            case "$prev" in']
        file_opts = [n for o in opts if o.takes_value and o.files and not o.choices for n in o.names]
        if file_opts:
            out += [f'                {"|".join(file_opts)}) _medcli_files "$cur"; return 0 ;;']
        for o in opts:
            if o.takes_value and o.choices:
                out += [f'                {"|".join(o.names)}) COMPREPLY=($(compgen -W "{" ".join(o.choices)}" -- "$cur")); return 0 ;;']
        plain = [n for o in opts if o.takes_value and not o.files and not o.choices for n in o.names]
        if plain:
            out += [f'                {"|".join(plain)}) return 0 ;;']
        out += ["            esac", '            if [[ "$cur" == -* ]]; then', f'                COMPREPLY=($(compgen -W "{words}" -- "$cur"))']
        if any(a.files for a in args):
            out += ["            else", '                _medcli_files "$cur"']
        out += ["            fi", "            ;;"]
    out += ["    esac", "    return 0", "}", "", "complete -F _medcli medcli", ""]
    return "\n".join(out)


def _zsh_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:").replace("'", "'\\''")


def _zsh_spec(o: Opt) -> list[str]:
    desc = _zsh_escape(_short(o.help))
    if not o.takes_value:
        action = ""
    elif o.choices:
        action = f":{_zsh_escape(o.metavar)}:({' '.join(o.choices)})"
    elif o.files:
        action = f":{_zsh_escape(o.metavar)}:_files"
    else:
        action = f":{_zsh_escape(o.metavar)}: "
    star = "*" if o.repeat else ""
    if len(o.names) == 1:
        return [f"'{star}{o.names[0]}[{desc}]{action}'"]
    excl = "" if o.repeat else "(" + " ".join(o.names) + ")"
    return [f"'{excl}{star}'{{{','.join(o.names)}}}'[{desc}]{action}'"]


def _zsh_fn(node: Node) -> str:
    return "_medcli_" + "_".join(re.sub(r"\W", "_", p) for p in node.path)


def zsh_completion(root: Node) -> str:
    out = [
        "#compdef medcli",
        "# zsh completion for medcli -- generated by scripts/gen_docs.py from the command declarations; do not edit.",
        "# Install: copy to a folder of $fpath (e.g. ~/.zfunc with fpath+=(~/.zfunc) before compinit).",
        "",
    ]
    for node in reversed(list(root.walk())):
        fn = _zsh_fn(node) if node.path else "_medcli"
        out.append(f"{fn}() {{")
        if node.children:
            out.append("    local -a subcommands")
            out.append("    subcommands=(")
            for c in node.children:
                out.append(f"        '{c.path[-1]}:{_zsh_escape(_short(c.summary))}'")
            out.append("    )")
        if node.children and (not node.path or getattr(node.cmd, "commands", None)):
            specs = ["'(- *)--version[Print the version and exit]'"] if not node.path else []
            specs += ["'(- *)'{-h,--help}'[Show help and exit]'", "'1:command:->command'", "'*::arg:->args'"]
            out += ["    local curcontext=\"$curcontext\" state line", "    _arguments -C \\"]
            out += [f"        {s} \\" for s in specs[:-1]] + [f"        {specs[-1]}"]
            out += [
                "    case $state in",
                "        command) _describe -t commands 'medcli command' subcommands ;;",
                "        args)",
                "            case $line[1] in",
            ]
            for c in node.children:
                out.append(f"                {c.path[-1]}) {_zsh_fn(c)} ;;")
            out += ["            esac ;;", "    esac", "}", ""]
            continue
        if node.children:  # optional sub-command word (harmonize fit)
            out.append("    if (( CURRENT > 2 )) && [[ $words[2] == (" + "|".join(c.path[-1] for c in node.children) + ") ]]; then")
            out.append("        shift words; (( CURRENT-- )); _medcli_" + "_".join(node.path) + "_${words[1]}; return")
            out.append("    fi")
        args, opts = options_of(node.cmd, node.path[-1])
        specs = [s for o in opts for s in _zsh_spec(o)]
        for a in args:
            action = "_files" if a.files else " "
            if node.children:  # the first word may also be the sub-command
                specs.append(f"'1:{_zsh_escape(a.metavar.lower())}:->first'")
            specs.append(f"'{'*' if a.repeat else '1'}:{_zsh_escape(a.metavar.lower())}:{action}'")
        if node.children:
            out.append("    local state")
        out.append("    _arguments -s -S \\")
        out += [f"        {s} \\" for s in specs[:-1]] + [f"        {specs[-1]}"]
        if node.children:
            out.append("    [[ $state == first ]] && { _describe -t commands 'sub-command' subcommands; _files }")
        out += ["}", ""]
    out += ['_medcli "$@"', ""]
    return "\n".join(out)


def fish_completion(root: Node) -> str:
    top = [c.path[-1] for c in root.children]
    out = [
        "# fish completion for medcli -- generated by scripts/gen_docs.py from the command declarations; do not edit.",
        "# Install: copy to ~/.config/fish/completions/medcli.fish",
        "",
        "complete -c medcli -f",
        "complete -c medcli -n __fish_use_subcommand -l version -d 'Print the version and exit'",
        "complete -c medcli -n __fish_use_subcommand -s h -l help -d 'Show help and exit'",
    ]
    for c in root.children:
        out.append(f"complete -c medcli -n __fish_use_subcommand -a {c.path[-1]} -d {_sq(_short(c.summary))}")
    for node in root.walk():
        if not node.path:
            continue
        sibling_names = " ".join(c.path[-1] for c in node.children)
        if len(node.path) == 1:
            cond = f"__fish_seen_subcommand_from {node.path[0]}"
            if node.children:
                cond += f"; and not __fish_seen_subcommand_from {sibling_names}"
                for c in node.children:
                    out.append(f"complete -c medcli -n {_sq(cond)} -a {c.path[-1]} -d {_sq(_short(c.summary))}")
        else:
            cond = f"__fish_seen_subcommand_from {node.path[0]}; and __fish_seen_subcommand_from {node.path[1]}"
        if getattr(node.cmd, "commands", None):
            continue
        args, opts = options_of(node.cmd, node.path[-1])
        for o in opts:
            flags = []
            for n in o.names:
                flags.append(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}")
            extra = ""
            if o.takes_value and o.choices:
                extra = f" -x -a {_sq(' '.join(o.choices))}"
            elif o.takes_value and o.files:
                extra = " -r -F"
            elif o.takes_value:
                extra = " -x"
            out.append(f"complete -c medcli -n {_sq(cond)} {' '.join(flags)}{extra} -d {_sq(_short(o.help))}")
        if any(a.files for a in args):
            out.append(f"complete -c medcli -n {_sq(cond)} -F")
    return "\n".join(out) + "\n"


# -- main ------------------------------------------------------------------------------------------------------


def render() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    root = build_tree()
    files = {"man/medcli.1": root_page(root)}
    for node in root.walk():
        if node.path:
            files[f"man/{node.page}.1"] = command_page(node)
    files["completions/medcli.bash"] = bash_completion(root)
    files["completions/_medcli"] = zsh_completion(root)
    files["completions/medcli.fish"] = fish_completion(root)
    return files


def stale(files: dict[str, str], base: Path) -> list[str]:
    """Generated files that differ from (or are missing in) ``base``, and old ones to remove."""
    bad = [rel for rel, text in files.items() if not (base / rel).is_file() or (base / rel).read_text() != text]
    for folder in ("man", "completions"):
        for p in sorted((base / folder).glob("*")) if (base / folder).is_dir() else []:
            rel = f"{folder}/{p.name}"
            if rel not in files:
                bad.append(rel + " (no longer generated)")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="folder to write man/ and completions/ into")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files in --out are stale")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        bad = stale(files, args.out)
        for rel in bad:
            print(f"stale: {rel}", file=sys.stderr)
        if bad:
            print("run: python scripts/gen_docs.py", file=sys.stderr)
        return 1 if bad else 0
    for folder in ("man", "completions"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        for p in (args.out / folder).glob("*"):
            if f"{folder}/{p.name}" not in files and p.is_file():
                p.unlink()
    for rel, text in files.items():
        (args.out / rel).write_text(text)
    print(f"wrote {len(files)} files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
