import pytest

from fsgen_engine.eval.answers import (check_gsm8k, check_math, check_mmlu, extract_boxed, extract_corrected,
                                       extract_mmlu, extract_research, normalize_math)


@pytest.mark.parametrize("text,research,corrected", [
    ("The answer is 18", "18", 18.0),
    ("so 3 + 4 = 7. The answer is 7.", "7", 7.0),
    ("He pays $1,234.50 in total", "234.50", 1234.5),
    ("The temperature drops to -3", "3", -3.0),
    ("20,800 dollars", "800", 20800.0),
    ("first 5 then 12 and finally 0.75", "0.75", 0.75),
    ("no numbers here", None, None),
    ("", None, None),
    ("costs $5.", "5", 5.0),
    ("a ratio of 1,23 items", "23", 23.0),  # not a thousands group: the last number is 23
    ("1,000,000 people", "000", 1_000_000.0),
])
def test_gsm8k_extractions(text, research, corrected):
    assert extract_research(text) == research
    assert extract_corrected(text) == corrected


@pytest.mark.parametrize("out,gold,research,corrected", [
    ("The answer is 18", "#### 18", True, True),
    ("The answer is 1,600", "#### 1,600", False, True),
    ("The answer is 1600", "#### 1,600", False, True),
    ("The answer is -3", "#### -3", False, True),
    ("The answer is 3", "#### -3", False, False),
    ("The answer is 18.00", "#### 18", False, True),
    ("I do not know", "#### 18", False, False),
    ("It is 17 or 18, the answer is 19", "#### 18", False, False),
])
def test_check_gsm8k(out, gold, research, corrected):
    r = check_gsm8k(out, "work\n" + gold)
    assert (r["research"], r["corrected"]) == (research, corrected)


@pytest.mark.parametrize("text,letter", [
    ("... The answer is (B).", "B"),
    ("the answer is (c)", "C"),
    ("The answer is D", "D"),
    ("First (A) looks wrong. The answer is (C). Also the answer is (D)", "D"),
    ("I think it is about energy.", None),
    ("A lot of things. Answer: (B)", "B"),
    ("", None),
])
def test_mmlu_letters(text, letter):
    assert extract_mmlu(text) == letter


def test_mmlu_no_default():
    assert check_mmlu("no idea", 0) == {"gold": "A", "pred": None, "correct": False}
    assert check_mmlu("The answer is (A)", 0)["correct"]


@pytest.mark.parametrize("text,content", [
    (r"so \boxed{5}", "5"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1} then \boxed{\left( 3, \frac{\pi}{2} \right)}.", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"\boxed{{a}{b{c}}}", r"{a}{b{c}}"),
    (r"\boxed 7", "7"),
    (r"\fbox{x}", "x"),
    (r"unbalanced \boxed{1 + {2}", None),
    ("no box", None),
])
def test_boxed(text, content):
    assert extract_boxed(text) == content


@pytest.mark.parametrize("a,b,equal", [
    (r"\dfrac{1}{2}", r"\frac12", True),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    ("10^\\circ", "10", True),
    ("1,000", "1000", True),
    ("0.50", ".5", True),
    (r"\text{(C)}", "(C)", True),
    ("x=5", "5", True),
    ("5", "6", False),
])
def test_normalize_math(a, b, equal):
    assert (normalize_math(a) == normalize_math(b)) == equal


def test_check_math():
    assert check_math(r"Thus $\boxed{\dfrac{3}{4}}$.", r"\frac{3}{4}")["correct"]
    assert not check_math("The answer is 3/4", r"\frac{3}{4}")["correct"]
