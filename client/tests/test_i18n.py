"""Every string exists in both languages, and switching language tells the views."""

from __future__ import annotations

import importlib
import string

import pytest

from sm_client.i18n import AREAS, Language, Translator, catalog


@pytest.mark.parametrize("area", AREAS)
def test_each_area_has_the_same_keys_in_both_languages(area: str) -> None:
    module = importlib.import_module(f"sm_client.locales.{area}")
    assert set(module.EN) == set(module.ZH)
    for key in module.EN:
        assert key.startswith(f"{area}."), key
        fields_en = {f for _, f, _, _ in string.Formatter().parse(module.EN[key]) if f}
        fields_zh = {f for _, f, _, _ in string.Formatter().parse(module.ZH[key]) if f}
        assert fields_en == fields_zh, key
        assert module.ZH[key] != module.EN[key] or not any(c.isalpha() for c in module.EN[key]), key


def test_no_key_is_defined_by_two_areas() -> None:
    seen: dict[str, str] = {}
    for area in AREAS:
        for key in importlib.import_module(f"sm_client.locales.{area}").EN:
            assert key not in seen, f"{key} in {area} and {seen[key]}"
            seen[key] = area
    assert set(seen) == set(catalog(Language.ZH))


def test_switching_the_language_changes_the_texts_and_notifies() -> None:
    i18n = Translator()
    calls: list[str] = []
    i18n.listen(lambda: calls.append(i18n.language.value))
    assert i18n.t("shell.nav.nodes") == "Nodes"
    i18n.set_language(Language.ZH)
    assert i18n.t("shell.nav.nodes") == "节点"
    i18n.set_language(Language.ZH)  # no change, no call
    assert calls == ["zh"]
    assert i18n.t("no.such.key") == "no.such.key"


def test_a_count_of_one_takes_the_singular_where_there_is_one() -> None:
    i18n = Translator()
    assert i18n.t("nodes.count", n=1) == "1 node"
    assert i18n.t("nodes.count", n=2) == "2 nodes"
    assert i18n.t("nodes.count", n=0) == "0 nodes"
    assert i18n.t("admin.groups.node_count", count=1) == "1 node"
    i18n.set_language(Language.ZH)
    assert "1" in i18n.t("nodes.count", n=1)
    assert "节点" in i18n.t("nodes.count", n=1)
