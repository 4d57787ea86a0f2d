"""Verifiers: rewards computed by a program, not a model.

``math`` (``reward.verifiers.math``) compares a completion's final answer with the
prompt's ``reference``, or, without one, with the other candidates' answers
(agreement); ``code`` (``reward.verifiers.code``) runs the answer's code against the
prompt's ``tests`` in a sandbox (``reward.verifiers.sandbox``); ``constraints``
(``reward.verifiers.constraints``) checks IFEval-style instruction constraints.
Each says in its details what its score was based on (``reward.verifiers.basis``).
"""
