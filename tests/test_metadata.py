"""Manifest, hacs.json and translations are valid and agree with the pinned requirements."""

from __future__ import annotations

import json
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "custom_components" / "nes_meter"
MANIFEST = json.loads((INTEGRATION / "manifest.json").read_text())


def _keys(tree: object, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix}
    found: set[str] = set()
    for key, value in tree.items():
        found |= _keys(value, f"{prefix}.{key}" if prefix else key)
    return found


def test_manifest_key_order_and_required_keys() -> None:
    keys = list(MANIFEST)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert {
        "codeowners",
        "config_flow",
        "documentation",
        "integration_type",
        "iot_class",
        "issue_tracker",
        "requirements",
        "version",
    } <= set(keys)
    assert MANIFEST["domain"] == "nes_meter" == INTEGRATION.name
    assert MANIFEST["config_flow"] is True
    assert MANIFEST["iot_class"] == "local_polling"
    assert MANIFEST["documentation"].startswith("https://")
    assert MANIFEST["issue_tracker"].startswith("https://")
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["version"])


def test_requirement_pins_match_requirements_test() -> None:
    pinned = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements_test.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for requirement in MANIFEST["requirements"]:
        name, version = requirement.split("==")
        assert pinned[name] == version, requirement


def test_hacs_json() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert hacs["name"]
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", hacs["homeassistant"])


def test_translations_have_the_same_keys() -> None:
    english = _keys(json.loads((INTEGRATION / "translations" / "en.json").read_text()))
    files = sorted((INTEGRATION / "translations").glob("*.json"))
    assert {path.stem for path in files} >= {"en", "da", "de"}
    for path in files:
        assert _keys(json.loads(path.read_text())) == english, path.name


def test_every_sensor_and_exception_is_translated() -> None:
    from custom_components.nes_meter.history_sensor import HISTORY_SENSORS
    from custom_components.nes_meter.sensor import LINK_SENSORS, SENSORS

    english = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    names = set(english["entity"]["sensor"])
    assert {d.translation_key for d in (*SENSORS, *LINK_SENSORS, *HISTORY_SENSORS)} == names
    icons = json.loads((INTEGRATION / "icons.json").read_text())["entity"]["sensor"]
    assert set(icons) <= names
    source = "\n".join(path.read_text() for path in INTEGRATION.glob("*.py"))
    for key in re.findall(r'translation_key="(\w+)"', source):
        assert key in english["exceptions"] or key in names or key in english["selector"], key


def test_last_error_states_are_translated_and_cover_the_library() -> None:
    """Every error name the library records maps to a translated state, not to "other"."""
    from custom_components.nes_meter.meter import c1218, mep
    from custom_components.nes_meter.sensor import LAST_ERROR_OPTIONS, last_error_state

    english = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    assert set(english["entity"]["sensor"]["last_error"]["state"]) == set(LAST_ERROR_OPTIONS)
    library = "\n".join(path.read_text() for path in (INTEGRATION / "meter").glob("*_session.py"))
    names = set(re.findall(r'stats\.error\("(\w+)"\)', library))
    names |= {name for code, name in c1218.RESPONSE_NAMES.items() if code}
    names |= {f"0x{code:02X}" for code in mep.MepResult if code}
    assert names
    for name in names:
        assert last_error_state(name) not in ("other", "none"), name
    assert last_error_state(None) == "none"
    assert last_error_state("something_new") == "other"


# hassfest's rule list (script/hassfest/quality_scale.py in home-assistant/core), by tier.
QUALITY_SCALE_RULES = {
    "bronze": [
        "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
        "config-flow-test-coverage", "dependency-transparency", "docs-actions", "docs-conditions",
        "docs-high-level-description", "docs-installation-instructions", "docs-removal-instructions",
        "docs-triggers", "entity-event-setup", "entity-unique-id", "has-entity-name", "runtime-data",
        "test-before-configure", "test-before-setup", "unique-config-entry",
    ],
    "silver": [
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
        "docs-installation-parameters", "entity-unavailable", "integration-owner", "log-when-unavailable",
        "parallel-updates", "reauthentication-flow", "test-coverage",
    ],
    "gold": [
        "devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update", "docs-examples",
        "docs-known-limitations", "docs-supported-devices", "docs-supported-functions", "docs-troubleshooting",
        "docs-use-cases", "dynamic-devices", "entity-category", "entity-device-class",
        "entity-disabled-by-default", "entity-translations", "exception-translations", "icon-translations",
        "reconfiguration-flow", "repair-issues", "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}  # fmt: skip


def test_quality_scale_lists_every_rule_with_a_reason() -> None:
    """Every rule is assessed; an exemption or a todo says why."""
    import yaml

    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())["rules"]
    assert list(rules) == [rule for tier in QUALITY_SCALE_RULES.values() for rule in tier]
    for name, rule in rules.items():
        status = rule if isinstance(rule, str) else rule["status"]
        assert status in ("done", "exempt", "todo"), name
        if status != "done":
            assert isinstance(rule, dict), name
            assert rule.get("comment"), name
