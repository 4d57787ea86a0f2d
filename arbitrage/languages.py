"""Language codes are plain BCP-47 / ISO 639 strings; this maps common ones to names."""

from __future__ import annotations

import re

from arbitrage.errors import ConfigError

NAMES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "bn": "Bengali", "ca": "Catalan",
    "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fil": "Filipino",
    "fr": "French", "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "ig": "Igbo", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "mr": "Marathi", "ms": "Malay", "nl": "Dutch", "no": "Norwegian",
    "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "so": "Somali", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "xh": "Xhosa", "yo": "Yoruba",
    "zh": "Chinese", "zu": "Zulu",
}  # fmt: skip

_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def check_code(code: str) -> str:
    """Return ``code`` if it looks like a BCP-47 tag, else raise ``ConfigError``."""
    if not isinstance(code, str) or not _CODE.match(code):
        raise ConfigError(
            f"not a language code: {code!r} (use BCP-47 / ISO 639, e.g. 'fr', 'pt-BR')"
        )
    return code


def name(code: str) -> str:
    """English name of a code (``pt-BR`` → ``Portuguese``); unknown codes map to themselves."""
    return NAMES.get(code, NAMES.get(code.split("-")[0], code))
