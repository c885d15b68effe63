"""LaTeX math in model text, as readable Unicode for a terminal.

R1 distills write their answers (and much of their thinking) as Markdown with LaTeX math in it:
`$\\frac{1}{2}$`, `\\[ x^2 + 1 \\]`, `$\\boxed{42}$`. A terminal cannot typeset that, and the raw
source is hard to read, so `readable_math` turns each math span into plain Unicode text
(`1/2`, `x² + 1`, `⟦42⟧`) and leaves everything else exactly as it was.

The symbol work (hundreds of macros: Greek, relations, arrows, accents, `\\text`, environments) is
pylatexenc's: its parser copes with real-world LaTeX, and its macro table is far larger and better
tested than a hand-written one would be. Its plain `latex_to_text` is not enough for math,
though, so a subclass patches what it does badly (each checked against pylatexenc 2.11):

- `x^{10}`, `a_{n+1}` come out as `x^10`, `a_n+1` (wrong); here they are Unicode super- and
  subscripts where every character has one (`x¹⁰`, `aₙ₊₁`), else `e^(iπ)`; `90^\\circ` is `90°`.
- `\\frac{a+b}{c}` comes out as `a+b/c` (wrong); here operands get parentheses when they need
  them: `(a+b)/c`, `1/(2a)`, `1/2`, and `\\frac12 x` next to a factor is `(1/2)x`.
  `\\dfrac{1}{2}` and `\\binom{n}{k}` come out glued together (`12`, `nk`), `\\boxed{42}` as a
  bare `42`; `\\sqrt{2}` is `√(2)` and `\\sqrt[3]{x}` loses its index.
- Spaces after symbol macros vanish (`\\leq \\geq` → `≤≥`, `\\sin x` → `sinx`); the source's
  spaces are kept here (but `2\\pi r` is `2πr`, as TeX sets it), and relations, arrows and
  `\\times`, `\\cdot`, `\\div` get a space either side.
- Macros it does not know (`\\implies`, `\\iff`, `\\ne`, `\\gcd`, `\\triangle`, ...) vanish;
  the common ones are added, and any other unknown macro is shown as written (`\\foo`).
- `\\mathbf` and friends become Mathematical Alphanumeric Symbols (U+1D400...), which many
  terminal fonts lack; they are folded back to plain letters (`\\mathbb{R}` stays `ℝ`).
- `f''` becomes a curly quote, `\\left.` leaves a dot, `\\pmod{n}` loses its "mod",
  `\\overline{AB}` loses its bar, and `aligned` and `cases` rows come out as space-padded cells.

Output conventions:

- Inline math (`$…$`, `\\(…\\)`) is replaced in place; if it holds several rows (`\\\\`,
  `aligned`, `cases`) they are joined with "; ".
- Display math (`$$…$$`, `\\[…\\]`) becomes its own paragraph: a blank line before and after,
  one line per row, indented by two spaces. Rows but the last end in two spaces (a Markdown
  hard break), so a Markdown renderer keeps them apart too. In a block quote the lines keep its
  `>` markers; in a list item (or wherever the line was indented) they take that indentation,
  past the list marker, instead of two more spaces, which could make an indented code block.
  After a bare list marker (`1. $$x$$`) the formula stays on the marker's line.
- `\\boxed{42}` is `⟦42⟧`; `\\binom{n}{k}` is `C(n, k)`; `\\sqrt{x+1}` is `√(x+1)`,
  `\\sqrt[3]{x}` is `∛x`; `\\pmod{n}` is `(mod n)`; matrices are `(1, 2; 3, 4)` (brackets as
  in the source environment); `\\quad` is two spaces, any other run of spaces one.

What counts as math: `$$…$$` and `\\[…\\]` (display), `\\(…\\)` and `$…$` (inline). A `$`
opens inline math only when the next character is not a space, and the span closes at the next
unescaped `$` only if the character before it is not a space and the one after is not a digit,
and no blank line comes between: "costs $5 and $10" stays as it is. `\\$` never delimits
anything. Fenced code blocks and inline code spans are left alone, as is text after an unclosed
delimiter. A span that fails to parse (unbalanced braces, say), or one over `MAX_SPAN`
characters, is left raw; `readable_math` never raises. Converted text carries no control
characters other than newlines (model text is untrusted; pylatexenc passes them through).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from pylatexenc import latexwalker, macrospec
from pylatexenc.latex2text import LatexNodes2Text

__all__ = ["MAX_SPAN", "readable_math"]

# Longer spans are left raw: nothing R1 writes inline is this long, and it bounds the parse.
MAX_SPAN = 2000


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Characters that have a Unicode superscript / subscript form. Capital and Greek superscripts
# are modifier letters most terminal fonts have; q, and several capitals, have none.
_SUP = dict(
    zip(
        "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWαβγδεθιφχ'′∘°*∗",
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂᵅᵝᵞᵟᵋᶿᶥᵠᵡ′′°°**",
        strict=True,
    )
)
_SUB = dict(
    zip(
        "0123456789+-−=()aehijklmnoprstuvxβγρφχ",
        "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ",
        strict=True,
    )
)
_SCRIPT_CHARS = "".join(sorted(set(_SUP.values()) | set(_SUB.values())))
_COMBINING = "\u0300-\u036f\u20d0-\u20ff"

# A denominator (or a root's radicand) that reads unambiguously without parentheses: a number,
# one symbol with its accents and scripts, √ of one, a differential (dx, ∂t), or a bracketed
# whole. Anything else gets parentheses: 1/(2a), √(x+1).
_ATOM = re.compile(
    rf"""
    √?(?:\d+(?:\.\d+)?|[^\W\d_][{_COMBINING}]*|[∞∅])[{re.escape(_SCRIPT_CHARS)}{_COMBINING}]*!?
  | [d∂][^\W\d_][{re.escape(_SCRIPT_CHARS)}]*
    """,
    re.VERBOSE,
)
# Top-level characters that would bind looser than "/" in a numerator: 1+x/2 is not (1+x)/2.
_LOOSE = frozenset(" +-−±∓=<>≤≥≠≈≡→⇒⟹⇔⟺∈/,;:|")
_OPEN, _CLOSE = "([{⟨", ")]}⟩"
_FRACTIONS = frozenset(("frac", "dfrac", "tfrac", "cfrac"))

# Relations and arrows, and the binary operators R1 writes as macros: spaced on both sides
# whatever the source does (`a\leq b`), as TeX itself spaces them.
_SPACED = _names(
    """leq le geq ge neq ne approx equiv to rightarrow Rightarrow implies impliedby iff
    Leftrightarrow leftrightarrow leftarrow Leftarrow longrightarrow Longrightarrow
    longleftrightarrow Longleftrightarrow mapsto in notin subset subseteq supset supseteq
    sim simeq cong propto leqslant geqslant ll gg times cdot div"""
)

# Symbols set close to what follows them, like letters: ∂f, ∀x, ∠ABC.
_PREFIX_SYMBOLS = frozenset("∂∇∀∃∄¬∠∡△")

# Macros pylatexenc 2.11 has no rule for (it drops them, and shows nothing).
_SYMBOLS = {
    "implies": "⟹",
    "impliedby": "⟸",
    "iff": "⟺",
    "ne": "≠",
    "lt": "<",
    "gt": ">",
    "land": "∧",
    "lor": "∨",
    "neg": "¬",
    "bot": "⊥",
    "triangle": "△",
    "Box": "□",
    "degree": "°",
    "|": "‖",
    "checkmark": "✓",
    "colon": ":",
    "ldotp": ".",
    "gets": "←",
    "leadsto": "⇝",
    "owns": "∋",
    "models": "⊨",
    "Re": "ℜ",
    "Im": "ℑ",
    "bmod": " mod ",
    "mod": " mod ",
    "enspace": " ",
    "thinspace": " ",
    "medspace": " ",
    "thickspace": " ",
    ">": " ",
}
# Sizing, layout and bookkeeping macros that have nothing to show (a \left's delimiter is
# its own node, after it).
_SILENT = _names(
    """left right middle big Big bigg Bigg bigl bigr Bigl Bigr biggl biggr Biggl Biggr
    displaystyle textstyle scriptstyle scriptscriptstyle limits nolimits label nonumber notag
    hline cline hfill vphantom hphantom phantom"""
)
# Macros whose argument is the text; pylatexenc's parser may not take the argument, in which
# case it follows as a group of its own.
_CONTENT = _names("operatorname boldsymbol bm cancel bcancel mathring")
# Operator names pylatexenc 2.11 drops (sin, cos, log, lim, max... it keeps).
_OPERATORS = _names("gcd lcm det deg sec csc cot ker dim arg lg Pr sgn")

# Stands for \quad until spaces are collapsed, so it alone survives as two spaces.
_QUAD = "\ue000"
_SPACES = re.compile(rf"[ \t\u00a0{_QUAD}]+")
_AFTER_OPEN = re.compile(r"([(\[]) +")
_BEFORE_CLOSE = re.compile(r" +([)\]])")
_MATH_ALNUM = re.compile("[\U0001d400-\U0001d7ff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_MATRICES = {
    "matrix": ("", ""),
    "smallmatrix": ("", ""),
    "array": ("", ""),
    "pmatrix": ("(", ")"),
    "bmatrix": ("[", "]"),
    "Bmatrix": ("{", "}"),
    "vmatrix": ("|", "|"),
    "Vmatrix": ("‖", "‖"),
}
_ROWS = _names(
    """aligned align alignat alignedat split gather gathered eqnarray equation multline
    cases dcases rcases"""
)


def _squeeze(text: str) -> str:
    return _SPACES.sub(lambda m: "  " if _QUAD in m.group() else " ", text).strip()


def _script_chars(text: str, table: dict[str, str]) -> str | None:
    """`text` in the characters of `table`, or None if one of them has no form there."""
    compact = "".join(text.split())
    if not compact or any(c not in table for c in compact):
        return None
    return "".join(table[c] for c in compact)


def _script(kind: str, text: str) -> str:
    """`text` as a superscript (`kind` "^") or subscript ("_")."""
    text = _squeeze(text)
    if not text:
        return ""
    mapped = _script_chars(text, _SUP if kind == "^" else _SUB)
    if mapped is not None:
        return mapped
    if _is_single(text) or _is_bracketed(text):
        return kind + text
    return f"{kind}({text})"


def _is_single(text: str) -> bool:
    return len(text) == 1 or (len(text) > 1 and all(unicodedata.combining(c) for c in text[1:]))


def _is_bracketed(text: str) -> bool:
    """Whether `text` is one bracketed group: "(a+b)", but not "(a)+(b)"."""
    if len(text) < 2 or text[0] not in _OPEN or text[-1] != _CLOSE[_OPEN.index(text[0])]:
        return False
    depth = 0
    for i, c in enumerate(text):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return False
    return True


def _has_loose_operator(text: str) -> bool:
    depth = 0
    for i, c in enumerate(text):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(depth - 1, 0)
        elif depth == 0 and c in _LOOSE and not (i == 0 and c in "-−"):
            return True
    return False


def _is_atom(text: str) -> bool:
    return _ATOM.fullmatch(text) is not None or _is_bracketed(text)


def _fraction(num: str, den: str) -> str:
    num, den = _squeeze(num), _squeeze(den)
    if _has_loose_operator(num) and not _is_bracketed(num):
        num = f"({num})"
    if not _is_atom(den):
        den = f"({den})"
    return f"{num}/{den}"


def _root(index: str, body: str) -> str:
    index, body = _squeeze(index), _squeeze(body)
    if not _is_atom(body):
        body = f"({body})"
    if not index or index == "2":
        return "√" + body
    if index in ("3", "4"):
        return "∛∜"[int(index) - 3] + body
    sup = _script_chars(index, _SUP)
    return f"{sup}√{body}" if sup is not None else f"root({index}, {body})"


class _MathText(LatexNodes2Text):
    """pylatexenc's converter, patched where its math output is wrong or unreadable."""

    def __init__(self) -> None:
        super().__init__(math_mode="text")
        self._handlers: dict[str, Callable[[Any], str]] = {
            **dict.fromkeys(_FRACTIONS, self._frac),
            "sqrt": lambda n: _root(self._arg(n, 0), self._arg(n, 1)),
            "boxed": lambda n: f"⟦{_squeeze(self._arg(n, 0))}⟧",
            "fbox": lambda n: f"⟦{_squeeze(self._arg(n, 0))}⟧",
            "binom": self._binom,
            "dbinom": self._binom,
            "tbinom": self._binom,
            "pmod": lambda n: f" (mod {_squeeze(self._arg(n, 0))})",
            "tag": lambda n: f"{_QUAD}({_squeeze(self._arg(n, 0))})",
            "overline": lambda n: "".join(
                c if c.isspace() else c + "\u0305" for c in _squeeze(self._arg(n, 0))
            ),
            "overset": lambda n: self._arg(n, 1),
            "underset": lambda n: self._arg(n, 1),
            "stackrel": lambda n: self._arg(n, 1),
            "substack": lambda n: ", ".join(
                _squeeze(row) for row in self._arg(n, 0).split("\n") if row.strip()
            ),
            "quad": lambda n: _QUAD,
            "qquad": lambda n: _QUAD,
            "!": lambda n: "",
        }

    def _arg(self, node: Any, k: int) -> str:
        args = node.nodeargd.argnlist if node.nodeargd is not None else []
        if k >= len(args) or args[k] is None:
            return ""
        return str(self._groupnodecontents_to_text(args[k]))

    def _frac(self, node: Any) -> str:
        return _fraction(self._arg(node, 0), self._arg(node, 1))

    def _binom(self, node: Any) -> str:
        return f"C({_squeeze(self._arg(node, 0))}, {_squeeze(self._arg(node, 1))})"

    def nodelist_to_text(self, nodelist: Any) -> str:
        # Walks the nodes itself (not per node, as pylatexenc does) because a script's argument
        # is whatever comes next: the rest of a chars node, a group or a macro.
        parts: list[str] = []
        script = ""  # "^" or "_" still waiting for its argument
        drop_dot = False  # after \left / \right, where "." means no delimiter
        nodes = [node for node in nodelist or () if node is not None]
        for k, node in enumerate(nodes):
            if node.isNodeType(latexwalker.LatexCharsNode):
                chars = str(node.chars).replace("\n", " ")
                if drop_dot and chars.startswith("."):
                    chars = chars[1:]
                drop_dot = False
                start = 0
                for i, c in enumerate(chars):
                    if script:
                        if c.isspace():
                            start = i + 1
                            continue
                        parts.append(_script(script, c))
                        script = ""
                        start = i + 1
                    elif c in "^_":
                        parts.append(chars[start:i])
                        script = c
                        start = i + 1
                parts.append(chars[start:])
                continue
            is_macro = node.isNodeType(latexwalker.LatexMacroNode)
            drop_dot = is_macro and node.macroname in ("left", "right", "middle")
            text = str(self.node_to_text(node))
            if script:
                parts.append(_script(script, text))
                script = ""
                continue  # a macro as a script's argument: its space goes with it
            if is_macro and node.macroname in _FRACTIONS and self._juxtaposed(parts, nodes, k):
                text = f"({text})"
            parts.append(text)
            if is_macro and not (node.nodeargd is not None and node.nodeargd.argnlist):
                parts.append(self._space_after(text, node, nodes[k + 1 : k + 2]))
        parts.append(script)  # a dangling ^ or _ stays as written
        return "".join(parts)

    def _juxtaposed(self, parts: list[str], nodes: list[Any], k: int) -> bool:
        """Whether the fraction at `nodes[k]` is multiplied by what touches it: `2\\frac12`
        is 2·½, not "21/2", and `\\frac12 x` is not 1/(2x)."""
        before = next((p for p in reversed(parts) if p), "")[-1:]
        if before.isalnum() or before == ")":
            return True
        if k + 1 >= len(nodes):
            return False
        after = nodes[k + 1]
        if after.isNodeType(latexwalker.LatexCharsNode):
            return str(after.chars)[:1].isalnum() or str(after.chars).startswith(("(", "^"))
        if after.isNodeType(latexwalker.LatexMacroNode):
            if after.macroname in _FRACTIONS or after.macroname == "sqrt":
                return True
            spec = self.latex_context.get_macro_spec(after.macroname)
            repl = getattr(spec, "simplify_repl", None)
            return isinstance(repl, str) and len(repl) == 1 and repl.isalpha()
        return after.isNodeType(latexwalker.LatexGroupNode)

    @staticmethod
    def _space_after(text: str, node: Any, following: list[Any]) -> str:
        """The space to write after a bare macro. pylatexenc drops the source's (`\\sin x`
        comes out "sinx"); TeX drops it too, but then spaces by the symbol's class. So the
        source's space stays, except that a letter-like symbol keeps to a letter or digit right
        after it (`2\\pi r` is "2πr", `\\partial f` "∂f"), and an operator name gets one
        before a macro (`\\sin\\theta` is "sin θ")."""
        space = str(node.macro_post_space)
        nxt = following[0] if following else None
        if (
            not space
            and len(text) > 1
            and text.isalpha()
            and nxt is not None
            and nxt.isNodeType(latexwalker.LatexMacroNode)
            and str(nxt.macroname).isalpha()
            and nxt.macroname not in _SILENT
        ):
            return " "
        if (
            space
            and len(text) == 1
            and (unicodedata.category(text).startswith("L") or text in _PREFIX_SYMBOLS)
            and nxt is not None
            and nxt.isNodeType(latexwalker.LatexCharsNode)
            and str(nxt.chars)[:1].isalnum()
        ):
            return ""
        return space

    def macro_node_to_text(self, node: Any) -> str:
        name = str(node.macroname)
        handler = self._handlers.get(name)
        if handler is not None:
            return handler(node)
        if name in _SYMBOLS:
            return _SYMBOLS[name]
        if name in _SILENT:
            return ""
        if name in _CONTENT:
            count = len(node.nodeargd.argnlist) if node.nodeargd is not None else 0
            return "".join(self._arg(node, k) for k in range(count))
        if name in _OPERATORS:
            return name
        if name == "\\":
            return "\n"
        if self.latex_context.get_macro_spec(name) is None:
            return "\\" + name  # unknown: show it rather than lose it
        text = str(super().macro_node_to_text(node))
        return f" {text} " if name in _SPACED else text

    def specials_node_to_text(self, node: Any) -> str:
        # In math, '' is two primes and -- two minus signs, not typographic quotes and dashes.
        chars = str(node.specials_chars)
        return " " if chars in ("&", "~") else chars

    def math_node_to_text(self, node: Any) -> str:
        return self.nodelist_to_text(node.nodelist)

    def environment_node_to_text(self, node: Any) -> str:
        name = str(node.environmentname).rstrip("*")
        if name not in _MATRICES and name not in _ROWS:
            return str(super().environment_node_to_text(node))
        rows: list[list[str]] = [[]]
        cell: list[Any] = []
        for child in node.nodelist:
            if child.isNodeType(latexwalker.LatexSpecialsNode) and child.specials_chars == "&":
                rows[-1].append(_squeeze(self.nodelist_to_text(cell)))
                cell = []
            elif child.isNodeType(latexwalker.LatexMacroNode) and child.macroname in ("\\", "cr"):
                rows[-1].append(_squeeze(self.nodelist_to_text(cell)))
                rows.append([])
                cell = []
            else:
                cell.append(child)
        rows[-1].append(_squeeze(self.nodelist_to_text(cell)))
        rows = [row for row in rows if any(row)]
        if name in _MATRICES:
            left, right = _MATRICES[name]
            return left + "; ".join(", ".join(row) for row in rows) + right
        joiner = ", " if name.endswith("cases") else " "
        return "\n".join(joiner.join(c for c in row if c) for row in rows)


def _walker_context() -> macrospec.LatexContextDb:
    db = latexwalker.get_default_latex_context_db()
    # Arguments of the macros pylatexenc's parser does not know; without them \dfrac{1}{2}
    # parses as a bare macro followed by two groups.
    specs = [
        macrospec.std_macro(name, False, nargs)
        for name, nargs in (
            ("dfrac", 2),
            ("tfrac", 2),
            ("cfrac", 2),
            ("binom", 2),
            ("dbinom", 2),
            ("tbinom", 2),
            ("boxed", 1),
            ("fbox", 1),
            ("pmod", 1),
            ("tag", 1),
            ("overset", 2),
            ("underset", 2),
            ("stackrel", 2),
            ("substack", 1),
        )
    ]
    db.add_context_category("r1chat-math", macros=specs, prepend=True)
    return db


_WALKER_CONTEXT = _walker_context()
# Math with nothing for LaTeX to do ($x$, $n = 5$, $f(x)$): most of R1's inline spans.
_PLAIN = re.compile(r"(?:[^\W_]|[ \t\n.,;:+\-*/=<>()\[\]!|])+")
_CONVERTER = _MathText()


@functools.lru_cache(maxsize=4096)
def _convert(latex: str) -> tuple[str, ...] | None:
    """The rows of readable text for one span's LaTeX, or None to leave the span raw."""
    # Cached: a streamed answer is converted again on every update, formulas and all.
    if len(latex) > MAX_SPAN or not latex.strip():
        return None
    if _PLAIN.fullmatch(latex):
        text = latex.replace("\n", " ")  # what the parse would give, at a tenth of the cost
    else:
        try:
            walker = latexwalker.LatexWalker(
                latex, latex_context=_WALKER_CONTEXT, tolerant_parsing=False
            )
            nodes, _, _ = walker.get_latex_nodes(
                parsing_state=walker.make_parsing_state(in_math_mode=True)
            )
            text = _CONVERTER.nodelist_to_text(nodes)
        except Exception:  # malformed LaTeX, deep nesting (RecursionError): leave it raw
            return None
    text = _MATH_ALNUM.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = _CONTROL.sub("", text)
    rows = []
    for line in text.split("\n"):
        row = _BEFORE_CLOSE.sub(r"\1", _AFTER_OPEN.sub(r"\1", _squeeze(line)))
        if row:
            rows.append(row)
    return tuple(rows) or None


# Text with none of these has no math: returned as is, without a scan.
_MAYBE_MATH = re.compile(r"\$|\\\(|\\\[")
_FENCE_OPEN = re.compile(r"[ \t>]*(`{3,}|~{3,})(.*)")
_BLANK_LINE = re.compile(r"\n[ \t>]*(?=\n)")
# What starts a line inside a block quote or list item: its indentation and quote markers,
# then any list marker.
_PREFIX = re.compile(r"([ \t]*(?:>[ \t]*)*)((?:[-*+]|\d{1,9}[.)])[ \t]+)?")
_SPECIAL = re.compile(r"[`$\\]")


def _code_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each fenced code block; an unclosed one runs to the end."""
    if "```" not in text and "~~~" not in text:
        return []
    blocks = []
    pos = 0
    fence = ""
    start = 0
    for line in text.splitlines(keepends=True):
        if not fence:
            m = _FENCE_OPEN.fullmatch(line.rstrip("\r\n"))
            # Fences inside list items and quotes count too: better a formula left raw than
            # code rewritten. A backtick fence's info string has no backticks ("```a`b" is
            # inline code).
            if m is not None and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence, start = m.group(1), pos
        else:
            stripped = line.strip().lstrip(">").strip()
            if len(stripped) >= len(fence) and stripped == fence[0] * len(stripped):
                blocks.append((start, pos + len(line)))
                fence = ""
        pos += len(line)
    if fence:
        blocks.append((start, len(text)))
    return blocks


def _escaped(text: str, pos: int) -> bool:
    """Whether the character at `pos` follows an odd run of backslashes."""
    n = 0
    while pos - n > 0 and text[pos - n - 1] == "\\":
        n += 1
    return n % 2 == 1


class _Rewriter:
    """One pass over the text: code is skipped, math spans are replaced."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.blank_lines = [m.start() for m in _BLANK_LINE.finditer(text)]
        # Where the next backtick run of each length is (-1: none), so that unmatched runs
        # do not each rescan the rest of the text.
        self.next_run: dict[int, int] = {}
        self.next_closer: dict[str, int] = {}

    def run(self) -> str:
        pos = 0
        for start, end in _code_blocks(self.text):
            self.prose(pos, start)
            self.out.append(self.text[start:end])
            pos = end
        self.prose(pos, len(self.text))
        return "".join(self.out)

    def closer(self, token: str, start: int, end: int) -> int:
        """Where the first unescaped `token` at or after `start` is, if before `end`; else -1."""
        # Remembered, so that openers left unclosed do not each search the rest of the text.
        # Callers ask for ever later positions, so the first one at or after an earlier start is
        # also the first one at or after this one.
        known = self.next_closer.get(token, -2)
        if known == -2 or (known != -1 and known < start):
            known = self.text.find(token, start)
            while known >= 0 and _escaped(self.text, known):
                known = self.text.find(token, known + 1)
            self.next_closer[token] = known
        return known if known != -1 and known + len(token) <= end else -1

    def crosses_blank_line(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.blank_lines, start)
        return i < len(self.blank_lines) and self.blank_lines[i] < end

    def prose(self, pos: int, end: int) -> None:
        text = self.text
        copied = pos
        while True:
            m = _SPECIAL.search(text, pos, end)
            if m is None:
                break
            i = m.start()
            c = text[i]
            if c == "\\":
                run = i
                while run < end and text[run] == "\\":
                    run += 1
                nxt = text[run] if run < end else ""
                if (run - i) % 2 == 1 and nxt in ("(", "["):
                    span = self.backslash_math(run - 1, end, display=nxt == "[")
                    if span is not None:
                        self.out.append(text[copied : run - 1])
                        copied = pos = self.replace(run - 1, *span)
                        continue
                # An escaped delimiter ("\$", "\`") is text.
                pos = run + 1 if (run - i) % 2 == 1 and nxt in ("$", "`") else run
            elif c == "`":
                pos = self.code_span(i, end)
            elif text.startswith("$$", i):
                close = self.closer("$$", i + 2, end)
                if close < 0:
                    pos = i + 2
                    continue
                self.out.append(text[copied:i])
                copied = pos = self.replace(i, i + 2, close, close + 2, True)
            else:
                span = self.dollar_math(i, end)
                if span is None:
                    pos = i + 1
                    continue
                self.out.append(text[copied:i])
                copied = pos = self.replace(i, *span)
        self.out.append(text[copied:end])

    def code_span(self, start: int, end: int) -> int:
        """Where scanning resumes after the backtick run at `start`."""
        text = self.text
        n = 1
        while start + n < end and text[start + n] == "`":
            n += 1
        after = start + n
        close = self.next_run.get(n, -2)
        if close != -1 and close < after:
            m = re.compile(rf"(?<!`)`{{{n}}}(?!`)").search(text, after)
            close = m.start() if m is not None else -1
            self.next_run[n] = close
        if close == -1 or close + n > end or self.crosses_blank_line(after, close):
            return after  # unmatched: the backticks are text
        return close + n

    def dollar_math(self, start: int, end: int) -> tuple[int, int, int, bool] | None:
        text = self.text
        if start + 1 >= end or text[start + 1].isspace():
            return None
        close = start
        while True:
            close = text.find("$", close + 1, end)
            if close < 0:
                return None
            if not _escaped(text, close):
                break
        if (
            text[close - 1].isspace()
            or (close + 1 < end and text[close + 1].isdigit())
            or self.crosses_blank_line(start, close)
        ):
            return None
        return start + 1, close, close + 1, False

    def backslash_math(
        self, start: int, end: int, display: bool
    ) -> tuple[int, int, int, bool] | None:
        close = self.closer("\\]" if display else "\\)", start + 2, end)
        if close < 0 or (not display and self.crosses_blank_line(start, close)):
            return None
        return start + 2, close, close + 2, display

    def replace(self, start: int, body: int, close: int, end: int, display: bool) -> int:
        """Writes the span text[start:end] (LaTeX in text[body:close]); returns where to go on."""
        rows = _convert(self.text[body:close])
        if rows is None:
            self.out.append(self.text[start:end])
            return end
        if not display:
            self.out.append("; ".join(rows))
            return end
        return self.display(start, end, rows)

    def tail_lines(self) -> tuple[str, str | None]:
        """The output's last (unfinished) line, and the line before it (None if none)."""
        pieces: list[str] = []
        newlines = 0
        for piece in reversed(self.out):
            pieces.append(piece)
            newlines += piece.count("\n")
            if newlines >= 2:
                break
        tail = "".join(reversed(pieces))
        cut = tail.rfind("\n")
        if cut < 0:
            return tail, None
        return tail[cut + 1 :], tail[tail.rfind("\n", 0, cut) + 1 : cut]

    def display(self, start: int, end: int, rows: tuple[str, ...]) -> int:
        """Writes display math's `rows` as a paragraph of their own (see `readable_math`)."""
        text, out = self.text, self.out
        # The line so far as written, not as in the input: an earlier formula may end it.
        current, previous = self.tail_lines()
        m = _PREFIX.match(current)
        quote, marker = (m.group(1), m.group(2) or "") if m is not None else ("", "")
        blank = quote.rstrip()
        # Lines after a list item's first line stay in the item by being indented past its
        # marker; more indentation than that could make the formula an indented code block.
        prefix = quote + " " * len(marker)
        lead = prefix if prefix[:1] in (" ", "\t") else prefix + "  "
        before = current[len(quote) :].strip()
        if marker and before == marker.strip():
            # A list item whose first line is the formula: it stays on the marker's line, as a
            # blank line here would end the item.
            out[-1] = out[-1].rstrip(" \t") + " "
        elif before:
            out[-1] = out[-1].rstrip(" \t")
            out.append("\n" + blank + "\n" + lead)
        elif previous is not None and previous.strip(" \t>"):
            out[-1] = out[-1].rstrip(" \t")
            out.append("\n" + lead)
        else:
            out.append(lead[len(quote) :])
        out.append(("  \n" + lead).join(rows))
        line_end = text.find("\n", end)
        after = text[end : len(text) if line_end < 0 else line_end]
        if after.strip():
            out.append("\n" + blank + "\n" + prefix)
            return end + len(after) - len(after.lstrip())
        if line_end >= 0:
            next_end = text.find("\n", line_end + 1)
            following = text[line_end + 1 : len(text) if next_end < 0 else next_end]
            if following.strip(" \t>"):
                out.append("\n" + blank)
            return line_end
        return len(text)


def readable_math(text: str) -> str:
    """`text` (Markdown) with its inline ($…$, \\(…\\)) and display ($$…$$, \\[…\\]) math turned
    into readable Unicode; everything else untouched.

    Inline math is replaced in place. Display math becomes its own paragraph: a blank line
    before and after, one line per row, indented by two spaces (in a list item, by the item's
    indentation instead). `\\boxed{42}` is `⟦42⟧`, `\\frac{a+b}{c}` is `(a+b)/c`; the module
    docstring has the other conventions. Never raises: a span that cannot be converted is left
    as written.
    """
    if not text or _MAYBE_MATH.search(text) is None:
        return text
    try:
        return _Rewriter(text).run()
    except Exception:  # a bug here must not cost the user the answer: show it as it came
        return text
