"""The gettext catalogues: every text the code marks for translation is in every locale's
catalogue, translated, with the English text's parameters; a text is shown in the language asked
for, and in English where a catalogue lacks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from topup import i18n
from topup.domain.errors import InvariantError
from topup.i18n.catalogues import _message_texts, catalogue, domains, parameters_of

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[str | None, str]


DOMAINS = sorted(path.stem for path in (ROOT / "babel").glob("*.cfg"))


def extracted_texts(domain: str = "messages") -> dict[Key, tuple[str, ...]]:
    """What ``pybabel extract -F babel/<domain>.cfg`` finds in the sources: (context, id) -> ids."""
    with (ROOT / "babel" / f"{domain}.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[Key, tuple[str, ...]] = {}
    for _, _, message, _, context in extract_from_dir(ROOT, method_map, options_map):
        ids = (message,) if isinstance(message, str) else tuple(message)
        found[(context, ids[0])] = ids
    return found


def catalogue_texts(locale: str, domain: str) -> dict[Key, tuple[str, ...]]:
    return {
        (message.context, message.id if isinstance(message.id, str) else message.id[0]): (
            (message.string,) if isinstance(message.string, str) else tuple(message.string)
        )
        for message in catalogue(locale, domain)
        if message.id
    }


def messages_of(locale: str) -> list[Message]:
    return [message for domain in DOMAINS for message in catalogue(locale, domain) if message.id]


def test_the_sources_mark_the_receipt_e_mail_and_http_texts_for_translation() -> None:
    ids = {message for _, message in extracted_texts()}
    assert {"Receipt number", "Your receipt %(receipt_number)s", "Not found"} <= ids
    assert len(ids) >= 30


def test_every_map_has_a_catalogue_in_every_locale_and_every_catalogue_a_map() -> None:
    assert "messages" in DOMAINS
    assert set(domains()) == set(DOMAINS)
    for locale in i18n.LOCALES:
        folder = ROOT / "src/topup/i18n/locales" / locale / "LC_MESSAGES"
        assert sorted(path.stem for path in folder.glob("*.po")) == DOMAINS, locale


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_marked_text_is_in_every_catalogue_and_nothing_else_is(
    locale: str, domain: str
) -> None:
    assert set(catalogue_texts(locale, domain)) == set(extracted_texts(domain))


TRANSLATED = [locale for locale in i18n.LOCALES if locale != "en"]


@pytest.mark.parametrize("locale", TRANSLATED)
def test_a_text_is_translated_the_same_in_every_domain(locale: str) -> None:
    """One word per concept: "Active" is one word on every page of a language."""
    seen: dict[Key, tuple[str, tuple[str, ...]]] = {}
    for domain in DOMAINS:
        for key, forms in catalogue_texts(locale, domain).items():
            first = seen.setdefault(key, (domain, forms))
            assert first[1] == forms, (locale, key[1], first[0], domain)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_text_is_translated_with_the_english_texts_parameters(locale: str) -> None:
    for message in messages_of(locale):
        ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
        forms = (message.string,) if isinstance(message.string, str) else message.string
        assert not message.fuzzy, (locale, ids[0])
        assert all(form.strip() for form in forms), (locale, ids[0])
        wanted = frozenset().union(*(parameters_of(text) for text in ids))
        for form in forms:
            assert parameters_of(form) <= wanted, (locale, ids[0])
            if len(ids) == 1:
                assert parameters_of(form) == wanted, (locale, ids[0])


def test_every_chinese_text_is_written_in_chinese() -> None:
    for message in messages_of("zh_Hans"):
        if message.id:
            assert re.search(r"[\u4e00-\u9fff]", str(message.string)), message.id


def test_the_english_catalogue_says_what_the_code_says() -> None:
    """English is the message id: a text is left empty (``make messages`` adds it so) or copied."""
    for message in messages_of("en"):
        if message.id:
            assert message.string in {"", message.id}, message.id
            assert not message.fuzzy, message.id


def test_parameters_are_filled_in_the_chosen_language() -> None:
    texts = i18n.translations("id")
    assert (
        texts.gettext("Your receipt %(receipt_number)s", receipt_number="R-1") == "Struk Anda R-1"
    )
    assert i18n.translations("zh-CN").gettext("Receipt") == "收据"
    assert i18n.translations("fr").gettext("Receipt") == "Receipt"


def test_a_text_missing_from_a_catalogue_is_shown_in_english() -> None:
    texts = i18n.translations("ms")
    assert texts.gettext("Nothing here %(name)s", name="x") == "Nothing here x"
    assert texts.pgettext("nowhere", "Receipt") == "Receipt"
    assert texts.ngettext("%(count)d card", "%(count)d cards", 3) == "3 cards"
    assert texts.ngettext("%(count)d card", "%(count)d cards", 1) == "1 card"


def test_plural_forms_follow_the_languages_rule() -> None:
    found = Catalog(locale="en", domain="messages")
    found.add(("%(count)d card", "%(count)d cards"), ("one card", "%(count)d cards"))
    texts = i18n.Translations("en", _message_texts(found, "test"), lambda count: int(count != 1))
    assert texts.ngettext("%(count)d card", "%(count)d cards", 1) == "one card"
    assert texts.ngettext("%(count)d card", "%(count)d cards", 4) == "4 cards"


def test_a_translation_with_other_parameters_stops_the_catalogue_from_loading() -> None:
    broken = Catalog(locale="ms", domain="messages")
    broken.add("Your receipt %(receipt_number)s", "Resit anda %(number)s")
    with pytest.raises(InvariantError, match="other parameters"):
        _message_texts(broken, "test")


def test_a_fuzzy_translation_is_not_shown() -> None:
    unsure = Catalog(locale="ms", domain="messages")
    unsure.add("Receipt", "Resit?", flags=["fuzzy"])
    assert _message_texts(unsure, "test") == {}
