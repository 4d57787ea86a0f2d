"""What a score was based on, read back from its details.

A verifier marks each score it gives with one ``basis_*`` detail (details are numbers,
so the mark is ``1.0``); an ensemble keeps it under the member's label
(``"math.basis_reference"``). ``basis`` turns the marks into the name that the
mixture, the preference pairs, the card and the report carry:

- ``reference``: the answer was checked against the prompt's reference answer;
- ``agreement``: the answer was compared with the other candidates' (majority vote);
- ``tests``: the answer's code ran against tests;
- ``constraints``: the prompt's instruction constraints were checked;
- ``model``: a judge or a reward model, no verifier.

An ensemble of a model and a verifier gives ``model+reference`` and the like.
"""

from __future__ import annotations

from collections.abc import Mapping

REFERENCE = "basis_reference"
AGREEMENT = "basis_agreement"
TESTS = "basis_tests"
CONSTRAINTS = "basis_constraints"
#: 1.0: a verifier found the answer right (reference, tests, constraints); 0.0: wrong.
VERIFIED = "verified"

_NAMES = {
    REFERENCE: "reference",
    AGREEMENT: "agreement",
    TESTS: "tests",
    CONSTRAINTS: "constraints",
}
#: Details that wrappers (gate, normalisation, length control) add: not ensemble members.
_WRAPPER_KEYS = frozenset(
    {"language_fidelity", "language_gated", "before_gate", "unnormalised",
     "length_adjustment", "before_length", "verifier_gated"}
)  # fmt: skip


def basis(details: Mapping[str, float]) -> str:
    """The basis of a score with these details (see the module docstring)."""
    found: list[str] = []
    for key, value in details.items():
        name = _NAMES.get(key.rsplit(".", 1)[-1])
        if name and value and name not in found:
            found.append(name)
    if not found:
        return "model"
    verifiers = {k.split(".", 1)[0] for k in details if "." in k and k.rsplit(".", 1)[-1] in _NAMES}
    members = {
        k
        for k in details
        if "." not in k and k not in _WRAPPER_KEYS and not k.startswith(_VERIFIER_PREFIXES)
    }
    model = bool(verifiers) and bool(members - verifiers)
    return "+".join((["model"] if model else []) + found)


_VERIFIER_PREFIXES = ("basis_", "math_", "code_", "constraint", VERIFIED)


def verdict(details: Mapping[str, float]) -> bool | None:
    """A verifier's verdict in these details: ``True`` (every verifier that checked it
    found it right), ``False`` (one found it wrong) or ``None`` (none checked it; an
    agreement vote is no verdict)."""
    found = [v for k, v in details.items() if k.rsplit(".", 1)[-1] == VERIFIED]
    return None if not found else all(v == 1.0 for v in found)
