"""Answer extraction and checking (methods doc section 6).

GSM8K has two extractions and both accuracies are reported:
- ``research``: what the FS-GEN research code did: the last run of digits (optional decimal part)
  taken as-is, no thousands-comma stripping, no sign; compared as a string with the gold answer as
  written after ``####`` (so a gold ``1,600`` or ``-3`` can never match).
- ``corrected``: the last number with thousands commas stripped, the sign kept, decimals parsed
  (``$1,234.50`` -> 1234.5), compared numerically with the gold parsed the same way.
"""
from __future__ import annotations

import re

_RESEARCH_NUM = re.compile(r"\d+(?:\.\d+)?")
# sign, optional currency sign, then either a comma-grouped integer or plain digits, optional decimals
_NUM = re.compile(r"(?<![\w.])([-+−]?)\s?\$?((?:\d{1,3}(?:,\d{3})+)|\d+)?(\.\d+)?")


def gsm8k_gold(answer: str) -> str:
    """The gold answer string after ``####`` (as written, e.g. ``1,600``)."""
    if "####" not in answer:
        raise ValueError(f"gsm8k answer has no '####' marker: {answer[-80:]!r}")
    return answer.split("####")[-1].strip()


def extract_research(text: str) -> str | None:
    found = _RESEARCH_NUM.findall(text)
    return found[-1] if found else None


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUM.finditer(text):
        sign, intpart, frac = m.group(1), m.group(2), m.group(3)
        if not intpart and not frac:
            continue
        s = (intpart or "0").replace(",", "") + (frac or "")
        v = float(s)
        out.append(-v if sign in ("-", "−") else v)
    return out


def extract_corrected(text: str) -> float | None:
    nums = _numbers(text)
    return nums[-1] if nums else None


def parse_number(s: str) -> float | None:
    nums = _numbers(s)
    return nums[-1] if nums else None


def check_gsm8k(output: str, answer: str) -> dict:
    """{'research': bool, 'corrected': bool, 'pred_research', 'pred_corrected', 'gold'}."""
    gold = gsm8k_gold(answer)
    pr = extract_research(output)
    pc = extract_corrected(output)
    gv = parse_number(gold)
    return {
        "gold": gold,
        "pred_research": pr,
        "pred_corrected": pc,
        "research": pr is not None and pr == gold,
        "corrected": pc is not None and gv is not None and abs(pc - gv) <= 1e-6 * max(1.0, abs(gv)),
    }


# ------------------------------------------------------------------ MMLU
LETTERS = "ABCDEFGHIJ"
_MMLU_PATTERNS = (
    re.compile(r"answer is:?\s*\(([A-J])\)", re.IGNORECASE),
    re.compile(r"answer is:?\s*\**\s*([A-J])\b(?![a-z'])"),
    re.compile(r"[Aa]nswer:\s*\(?([A-J])\)?(?![A-Za-z])"),
)


def extract_mmlu(text: str) -> str | None:
    """The chosen letter from "The answer is (X)" (last occurrence); None when nothing parses
    (no default letter, so a non-answer is always wrong)."""
    for pat in _MMLU_PATTERNS:
        found = pat.findall(text)
        if found:
            return found[-1].upper()
    return None


def check_mmlu(output: str, answer_index: int) -> dict:
    pred = extract_mmlu(output)
    gold = LETTERS[int(answer_index)]
    return {"gold": gold, "pred": pred, "correct": pred == gold}


# ------------------------------------------------------------------ MATH-500
def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces matched; None if absent
    or unbalanced. ``\\boxed 5`` (no braces) returns the following token."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        best = text[i + 1:j]
                        break
                j += 1
        else:
            tok = re.match(r"[^\s$]+", text[i:])
            if tok:
                best = tok.group(0)
    return best


def _strip_text_cmd(s: str) -> str:
    # \text{cm} -> cm, \mbox{..} likewise (one level; nested braces are rare in answers)
    return re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)


def normalize_math(s: str | None) -> str | None:
    """Light normalisation so that equivalent spellings compare equal (not a symbolic checker)."""
    if s is None:
        return None
    s = s.strip()
    s = _strip_text_cmd(s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
                 ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", ""), ("^{\\circ}", ""),
                 ("\\%", ""), ("%", ""), ("\\$", ""), ("$", ""), ("\\displaystyle", "")):
        s = s.replace(a, b)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    # \frac12 -> \frac{1}{2}; \sqrt2 -> \sqrt{2}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    # a lone "x=" / "k=" prefix on a single-value answer
    s = re.sub(r"^[a-zA-Z]=(?=[^=]+$)", "", s)
    # numbers: 1,000 -> 1000 (only when every group is 3 digits), 0.50 -> 0.5, 5.0 -> 5
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    if re.fullmatch(r"-?\.\d+", s):
        s = s.replace(".", "0.", 1)
    return s


def check_math(output: str, answer: str) -> dict:
    pred = extract_boxed(output)
    return {"gold": answer, "pred": pred,
            "correct": pred is not None and normalize_math(pred) == normalize_math(answer)}
