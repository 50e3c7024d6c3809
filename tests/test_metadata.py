"""Manifest, hacs.json and translations are valid and agree with the pinned requirements."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
import re
import tomllib

import homeassistant
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _requirements(path: Path) -> dict[str, Requirement]:
    """The requirement lines of a requirements or constraints file, by normalised package name."""
    found: dict[str, Requirement] = {}
    for line in path.read_text().splitlines():
        if text := line.split("#", 1)[0].strip():
            requirement = Requirement(text)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def _pins(path: Path) -> dict[str, str]:
    return {
        name: next(iter(requirement.specifier)).version
        for name, requirement in _requirements(path).items()
        if [spec.operator for spec in requirement.specifier] == ["=="]
    }


RUNNING_CONSTRAINTS = Path(homeassistant.__file__).parent / "package_constraints.txt"


def _constraint_files() -> list[Path]:
    """package_constraints.txt of the Home Assistant the suite runs on, and of the other lines once
    scripts/test-ha has installed them (seen from the floor; inside its root the running one is one)."""
    files = [RUNNING_CONSTRAINTS]
    files += sorted(ROOT.glob(".cache/ha-root/opt/*/lib/python3*/site-packages/homeassistant/package_constraints.txt"))
    return [path for path in files if path.is_file()]


def test_requirements_admit_the_tested_and_the_constrained_versions() -> None:
    """Home Assistant installs a custom integration's requirements under its package_constraints.txt
    (homeassistant/requirements.py, pip_kwargs), where newer releases pin serialx for core's usb and
    zha: manifest.json asks for a range that admits the version each supported release allows, and
    the suite runs with both ends (requirements_test.txt on the floor, requirements/ha-*.txt with
    what each newer release pins)."""
    tested_files = (ROOT / "requirements_test.txt", *sorted((ROOT / "requirements").glob("ha-20*.*[0-9].txt")))
    tested = [_pins(path) for path in tested_files]
    constraints = [(path, _requirements(path)) for path in _constraint_files()]
    assert constraints, "the running Home Assistant has no package_constraints.txt"
    for line in MANIFEST["requirements"]:
        assert " " not in line, line  # hassfest
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert requirement.url is None and requirement.marker is None, line
        if name == "nesmeter":
            continue  # this tree's library, installed from lib/ (test_the_manifest_pins_this_library)
        versions = {pins[name] for pins in tested}
        assert all(name in pins for pins in tested), f"{name} is not pinned in every requirements file"
        for version in versions:
            assert requirement.specifier.contains(version), f"{line} refuses the tested {name}=={version}"
        # The oldest version the manifest admits is one the suite runs with.
        lower = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
        assert len(lower) == 1 and lower[0] in versions, f"{line}: its lower bound is not a tested version"
        for path, constrained in constraints:
            if name not in constrained:
                continue  # this Home Assistant does not constrain it (2025.4 and serialx)
            allowed = constrained[name].specifier
            assert any(allowed.contains(v) and requirement.specifier.contains(v) for v in versions), (
                f"{path}: {constrained[name]} leaves no tested version that {line} admits"
            )
            pinned = [spec.version for spec in allowed if spec.operator == "=="]
            if pinned and path == RUNNING_CONSTRAINTS:
                # This Home Assistant would install exactly that version: so does its test venv.
                assert importlib.metadata.version(name) == pinned[0], f"{name}: {path} pins {pinned[0]}"


def test_the_manifest_pins_this_library() -> None:
    """manifest.json requires exactly the version lib/pyproject.toml builds: the release publishes
    that version to PyPI before HACS can install the integration that pins it (README, Development)."""
    library = tomllib.loads((ROOT / "lib" / "pyproject.toml").read_text())["project"]
    pins = [Requirement(line) for line in MANIFEST["requirements"]]
    ours = [requirement for requirement in pins if canonicalize_name(requirement.name) == library["name"]]
    assert [str(requirement.specifier) for requirement in ours] == [f"=={library['version']}"]
    # serialx stays listed beside it only because config_flow.py imports serialx itself.
    assert {canonicalize_name(requirement.name) for requirement in pins} == {"nesmeter", "serialx"}
    assert "import serialx" in (INTEGRATION / "config_flow.py").read_text()
    # The library declares the same serialx range (one range to move when serialx moves).
    serialx = [Requirement(line) for line in library["dependencies"] if line.startswith("serialx")]
    assert [str(r.specifier) for r in serialx] == [str(r.specifier) for r in pins if r.name == "serialx"]
    try:
        installed = importlib.metadata.version("nesmeter")
    except importlib.metadata.PackageNotFoundError:
        return  # the Debian root's runs put lib/src on PYTHONPATH instead of installing it
    assert installed == library["version"], "scripts/setup re-installs lib/ when its pyproject changes"


def test_manifest_categories_and_connectivity_are_home_assistants_words() -> None:
    """``categories`` and ``connectivity`` (2026.x manifests) take the values core's manifests use.

    hassfest checks them against its lists; the core manifests of the running release are
    that vocabulary. Releases before the keys existed ignore them (the floor: no vocabulary).
    """
    core = [
        json.loads(path.read_text()) for path in Path(homeassistant.__file__).parent.glob("components/*/manifest.json")
    ]
    for key in ("categories", "connectivity"):
        assert MANIFEST[key], key
        words = {word for manifest in core for word in manifest.get(key, [])}
        if words:
            assert set(MANIFEST[key]) <= words, f"{key}: {set(MANIFEST[key]) - words} is not a word of this release"


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
    # Billing and power quality sensors are described per meter: a loaded full-featured meter
    # checks theirs (tests/test_billing_ha.py), and that no translation is left unused.
    assert {d.translation_key for d in (*SENSORS, *LINK_SENSORS, *HISTORY_SENSORS)} <= names
    icons = json.loads((INTEGRATION / "icons.json").read_text())["entity"]["sensor"]
    assert set(icons) <= names
    source = "\n".join(path.read_text() for path in INTEGRATION.glob("*.py"))
    for key in re.findall(r'translation_key="(\w+)"', source):
        translated = (english["exceptions"], names, english["selector"], english["entity"]["binary_sensor"])
        assert any(key in keys for keys in translated), key


def test_every_event_type_and_decoded_attribute_is_translated() -> None:
    """Each family's event types are its entity's translated states, and every attribute a
    decoded argument of that family can give (all 65536 arguments of each id) has a name."""
    from nesmeter.tables.event_ids import DECODERS, EVENT_IDS
    from nesmeter.tables.events import FAMILIES, event_types

    english = json.loads((INTEGRATION / "translations" / "en.json").read_text())["entity"]["event"]
    keys: dict[str, set[str]] = {family: set() for family in FAMILIES}
    for event_id, decode in DECODERS.items():
        for argument in range(1 << 16):
            keys[EVENT_IDS[event_id].family] |= set(decode(argument))
    for known in EVENT_IDS.values():
        if known.other_meaning:
            keys[known.family].add("other_meaning")
    for family in FAMILIES:
        attributes = english[f"{family}_event"]["state_attributes"]
        assert list(attributes["event_type"]["state"]) == list(event_types(family)), family
        base = {"event_type", "meter_time", "sequence", "event_id", "argument", "user"}
        assert set(attributes) == base | keys[family], family


def test_last_error_states_are_translated_and_cover_the_library() -> None:
    """Every error name the library records maps to a translated state, not to "other"."""
    from custom_components.nes_meter.sensor import LAST_ERROR_OPTIONS, last_error_state
    from nesmeter.c1218 import framing as c1218
    from nesmeter.mep import framing as mep

    english = json.loads((INTEGRATION / "translations" / "en.json").read_text())
    assert set(english["entity"]["sensor"]["last_error"]["state"]) == set(LAST_ERROR_OPTIONS)
    library = "\n".join(path.read_text() for path in (ROOT / "lib" / "src" / "nesmeter").glob("*/*session.py"))
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
