from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1chat import mathtext
from r1chat.mathtext import MAX_SPAN, readable_math

# Typical R1 answer snippets and what they read as.
CASES = [
    # Fractions: parentheses only where the plain form would read differently.
    (r"So $\frac{1}{2}$ of it.", "So 1/2 of it."),
    (r"$\frac{a+b}{c}$", "(a+b)/c"),
    (r"$\dfrac{1}{2a}$ and $\tfrac{\pi}{4}$", "1/(2a) and π/4"),
    (r"$x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}$", "x = (-b ± √(b² - 4ac))/(2a)"),
    (r"$\frac{1}{2}x + 2\frac{1}{2}$", "(1/2)x + 2(1/2)"),
    (r"$\frac{n(n+1)}{2}$, $\frac{dy}{dx}$, $\frac{\sqrt{3}}{2}$", "n(n+1)/2, dy/dx, √3/2"),
    (r"$\frac{1}{\frac{1}{2}}$", "1/(1/2)"),
    # Roots.
    (r"$\sqrt{2}$, $\sqrt{x+1}$, $\sqrt{2x}$", "√2, √(x+1), √(2x)"),
    (r"$\sqrt[3]{27} = 3$ and $\sqrt[n]{x}$", "∛27 = 3 and ⁿ√x"),
    # Powers and subscripts: Unicode where every character has a form, else ^(...).
    (r"$x^2 + x^{10}$", "x² + x¹⁰"),
    (r"$a_1, a_{n+1}, a_{\max}$", "a₁, aₙ₊₁, aₘₐₓ"),
    (r"$e^{i\pi} + 1 = 0$", "e^(iπ) + 1 = 0"),
    (r"$2^{10} = 1024$ and $10^{-3}$", "2¹⁰ = 1024 and 10⁻³"),
    (r"$\sum_{i=1}^{n} i^2$", "∑ᵢ₌₁ⁿ i²"),
    (r"$\int_0^1 x^2\,dx = \frac{1}{3}$", "∫₀¹ x² dx = 1/3"),
    (r"$\lim_{x \to 0} \frac{\sin x}{x} = 1$", "lim_(x → 0) (sin x)/x = 1"),
    (r"$\prod_{k=1}^{n} k = n!$", "∏ₖ₌₁ⁿ k = n!"),
    # Greek and operators.
    (r"$\alpha + \beta = \pi - \theta$, $\Delta x$", "α + β = π - θ, Δx"),
    (r"$2\pi r$ and $\pi r^2$", "2πr and πr²"),
    (r"$3 \times 4 = 12$, $a\cdot b$, $6 \div 2$, $\pm 1$", "3 × 4 = 12, a · b, 6 ÷ 2, ± 1"),
    (r"$a\leq b \geq c \neq d \approx e$", "a ≤ b ≥ c ≠ d ≈ e"),
    (r"$x \to \infty$, $A \Rightarrow B \implies C \iff D$", "x → ∞, A ⇒ B ⟹ C ⟺ D"),
    (r"$1, 2, \cdots, n$ and $a_1, \ldots, a_n$", "1, 2, ⋯, n and a₁, …, aₙ"),
    (r"$\gcd(12, 18) = 6$ and $a \equiv b \pmod{n}$", "gcd(12, 18) = 6 and a ≡ b (mod n)"),
    (r"$\sin\theta$ and $\cos x$", "sin θ and cos x"),
    # Delimiters, text, units, degrees, percent, spacing.
    (r"$\left( \frac{1}{2} \right)^2$", "(1/2)²"),
    (r"$\left. x^2 \right|_0^1$", "x² |₀¹"),
    (r"The side is $5\text{ cm}$, area $25 \, \text{cm}^2$.", "The side is 5 cm, area 25 cm²."),
    (r"$\mathrm{kg}$, $3 \text{ m/s}$", "kg, 3 m/s"),
    (r"$\angle ABC = 90^\circ$ and $30^{\circ}\text{C}$", "∠ABC = 90° and 30°C"),
    (r"A $50\%$ rise", "A 50% rise"),
    (r"$x = 1, \quad y = 2$; $a\,b\;c\!d$", "x = 1,  y = 2; a b cd"),
    # Boxed answers, binomials, fonts, matrices, cases.
    (r"The answer is $\boxed{42}$.", "The answer is ⟦42⟧."),
    (r"$\boxed{\dfrac{3}{4}}$", "⟦3/4⟧"),
    (r"$\binom{n}{k} = \frac{n!}{k!(n-k)!}$", "C(n, k) = n!/(k!(n-k)!)"),
    (r"$x \in \mathbb{R}$, $\mathbf{v}$, $\overline{AB}$", "x ∈ ℝ, v, A\u0305B\u0305"),
    (r"$f'(x)$ and $f''(x)$", "f'(x) and f''(x)"),
    (r"$\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}$", "(1, 2; 3, 4)"),
    (
        r"$|x| = \begin{cases} x & x \geq 0 \\ -x & \text{otherwise} \end{cases}$",
        "|x| = x, x ≥ 0; -x, otherwise",
    ),
    # \( \) inline, \[ \] and $$ $$ display.
    (r"Let \(n = 5\) and \(k^2\).", "Let n = 5 and k²."),
    ("So\n$$\nx = \\frac{1}{2}\n$$\nThen.", "So\n\n  x = 1/2\n\nThen."),
    ("We get \\[ x^2 = 4 \\] so $x = 2$.", "We get\n\n  x² = 4\n\nso x = 2."),
    ("**Final Answer**\n\\[\n\\boxed{5}\n\\]", "**Final Answer**\n\n  ⟦5⟧"),
    (
        "Step:\n\n\\[\n\\begin{aligned}\na &= b + c \\\\\n&= 5\n\\end{aligned}\n\\]\n\nDone.",
        "Step:\n\n  a = b + c  \n  = 5\n\nDone.",
    ),
    ("1. First:\n   \\[\n   x = 1\n   \\]\n2. Second", "1. First:\n\n   x = 1\n\n2. Second"),
    ("> quote\n> $$ a^2 + b^2 = c^2 $$\n> end", "> quote\n>\n>   a² + b² = c²\n>\n> end"),
    # Dollars that are money, escaped, or code.
    ("It costs $5 and $10 in total.", "It costs $5 and $10 in total."),
    ("From $5 to $x$ dollars", "From $5 to x dollars"),
    ("Pay $x$5 now", "Pay $x$5 now"),
    (r"Escaped \$x\$ stays, $\$5$ converts", r"Escaped \$x\$ stays, $5 converts"),
    ("Code `$x^2$` stays, $x^2$ converts", "Code `$x^2$` stays, x² converts"),
    ("``a ` $x$`` and $y$", "``a ` $x$`` and y"),
    (
        'Run\n```python\ncost = "$5" + f"$x^2$"\n```\nthen $x^2$.',
        'Run\n```python\ncost = "$5" + f"$x^2$"\n```\nthen x².',
    ),
    ("~~~\n\\[ x^2 \\]\n~~~", "~~~\n\\[ x^2 \\]\n~~~"),
    # Malformed or unknown LaTeX: that span left raw (or the macro shown), never an error.
    (r"Broken $\frac{1}{2$ but $x^2$ fine", r"Broken $\frac{1}{2$ but x² fine"),
    (r"Extra $x}$ brace, and $\begin{aligned} a$", r"Extra $x}$ brace, and $\begin{aligned} a$"),
    (r"$\frobnicate x$", r"\frobnicate x"),
    (r"Unclosed $$x^2 and \[y^2", r"Unclosed $$x^2 and \[y^2"),
    ("$a\n\nb$", "$a\n\nb$"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_readable_math(source: str, expected: str) -> None:
    assert readable_math(source) == expected


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_control_characters_in_math_do_not_come_out() -> None:
    out = readable_math("a $x\x1b[31m^{2}\x07$ b $\\text{\x00\x9b}y$")
    assert out == "a x[31m² b y"
    out = readable_math("$$\x1b]0;title\x07\\frac{1}{2}$$")
    assert "\x1b" not in out and "\x07" not in out


def test_no_control_characters_introduced() -> None:
    pieces = ["$", "$$", "\\[", "\\]", "\\(", "\\)", "\\frac", "{", "}", "^", "_", "x", " ", "\n"]
    pieces += ["\\text", "\\boxed", "\\\\", "&", "\\begin{aligned}", "\\end{aligned}", "`"]
    rng = random.Random(1)
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
        out = readable_math(text)
        assert not any(ord(c) < 32 and c not in "\n\t" for c in out), repr(text)


@given(st.text().filter(lambda t: "$" not in t and "\\(" not in t and "\\[" not in t))
def test_text_without_math_comes_back_unchanged(text: str) -> None:
    assert readable_math(text) == text


@given(st.text(alphabet="$\\()[]{}^_`~&x1 \n\t>-*#%!'.=+"))
def test_never_raises(text: str) -> None:
    # The scanner itself, not readable_math: that one would hide a bug by returning its input.
    assert isinstance(mathtext._Rewriter(text).run(), str)
    assert isinstance(readable_math(text), str)


def test_text_outside_math_is_untouched() -> None:
    before, after = "Some *emphasis*,  two  spaces\tand a tab:\n\n- item ", " — and **more**."
    assert readable_math(before + "$x^2$" + after) == before + "x²" + after


def test_long_and_deep_spans_are_left_raw() -> None:
    long = "$" + "x+" * MAX_SPAN + "1$"
    assert readable_math(long) == long
    deep = "$" + "{" * 900 + "x" + "}" * 900 + "$"
    assert readable_math(deep) == deep
    unbalanced = "$" + "{" * 1500 + "$"
    assert readable_math(unbalanced) == unbalanced


def test_malformed_input_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        readable_math(r"$\frac{1}{$ $x}$ $\begin{cases}$ $\left($ $\unknown{x}$ $^$ $_{$")
    assert caplog.records == []


def test_a_large_answer_is_converted_throughout() -> None:
    chunk = (
        "Next we compute the value carefully, as the problem asks, step by step.\n"
        "With $a_{%d} = \\frac{%d}{n+1}$ we have\n\\[\n\\sum_{i=1}^{n} a_i \\leq \\sqrt{%d}\n\\]\n"
        "so it costs $5 and `code $x$` stays; $x = %d$.\n\n"
    )
    text = "".join(chunk % (i, i, i, i) for i in range(300))
    text += "Padding line without any formula in it at all, just words.\n" * 2500
    assert len(text) > 200_000
    out = readable_math(text)
    assert "a₂₉₉ = 299/(n+1)" in out and "a₀ = 0/(n+1)" in out


def test_unmatched_delimiters_are_left_alone() -> None:
    # Speed is for benchmarks; a quadratic scan would make these take minutes, not seconds.
    cases = ["\\(" * 50_000, "\\[ " * 50_000, "$x " * 70_000, "`` a ` " * 30_000]
    cases.append("\\(x\n\n" * 30_000 + "\\)")  # every opener finds the closer past a blank line
    for text in cases:
        assert readable_math(text) == text
