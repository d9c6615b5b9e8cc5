"""The safe YAML layer: plain data, the line of every key, and one-line errors for the rest."""

from __future__ import annotations

import math

import pytest

from sweeper.core.errors import SpecError
from sweeper.spec.yamlio import MAX_NODES, load_yaml, parse_yaml

SPEC = """\
name: x
train:
  lr: 1e-4
  wd: 1.0e-4
grid:
  - {depth: [14, 20], mode: [full]}
  - depth:
      - 32
      - 15
"""


def test_data_and_the_line_of_every_key_path():
    doc = parse_yaml(SPEC, "s.yaml")
    assert doc.data == {"name": "x", "train": {"lr": 1e-4, "wd": 1e-4},
                        "grid": [{"depth": [14, 20], "mode": ["full"]}, {"depth": [32, 15]}]}
    assert doc.lines["train.lr"] == 3
    assert doc.lines["grid[0].depth[1]"] == 6
    assert doc.lines["grid[1].depth"] == 7
    assert doc.lines["grid[1].depth[1]"] == 9
    assert doc.text == SPEC


def test_line_of_falls_back_to_the_nearest_typed_parent():
    doc = parse_yaml(SPEC, "s.yaml")
    assert doc.line_of("train.optimizer.momentum") == 2  # not typed: its section's line
    assert doc.line_of("nothing.here") is None


def test_exponent_without_a_dot_is_a_number_as_in_yaml_1_2():
    data = parse_yaml("a: 1e-4\nb: 2E5\nc: -3e+2\nd: .nan\ne: '1e-4'\n", "s.yaml").data
    assert data["a"] == 1e-4 and data["b"] == 2e5 and data["c"] == -300.0
    assert math.isnan(data["d"])
    assert data["e"] == "1e-4"  # quoted stays text


def test_merge_keys_fill_in_and_explicit_keys_win_with_their_own_lines():
    doc = parse_yaml("base: &b {lr: 0.1, epochs: 3}\ntrain:\n  <<: *b\n  lr: 0.2\n", "s.yaml")
    assert doc.data["train"] == {"lr": 0.2, "epochs": 3}
    assert doc.lines["train.lr"] == 4
    assert doc.lines["train.epochs"] == 1  # where the merged value was written


def test_a_date_stays_text():
    assert parse_yaml("name: 2021-05-01\n", "s.yaml").data == {"name": "2021-05-01"}


def test_a_utf8_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes("\ufeffname: café\n".encode("utf-8"))
    assert load_yaml(path).data == {"name": "café"}


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: 2\na: 3\n", "s.yaml: a: duplicate key 'a', first given at line 1 (line 3)"),
    ("t:\n  lr: 1\n  lr: 2\n", "s.yaml: t.lr: duplicate key 'lr', first given at line 2 (line 3)"),
    ("a: !!python/object/apply:os.system [echo hi]\n",
     "s.yaml: a: the tag !!python/object/apply:os.system is not allowed: a spec holds plain data only "
     "(mappings, lists, strings, numbers, booleans) (line 1)"),
    ("a: !!python/name:os.system\n",
     "s.yaml: a: the tag !!python/name:os.system is not allowed: a spec holds plain data only "
     "(mappings, lists, strings, numbers, booleans) (line 1)"),
    ("a: !!binary aGk=\n", "s.yaml: a: the tag !!binary is not allowed: a spec holds plain data only "
                           "(mappings, lists, strings, numbers, booleans) (line 1)"),
    ("a:\n\tb: 1\n", "s.yaml: invalid YAML: a tab character where YAML expects spaces (indent with spaces only) (line 2)"),
    ("a: 1\nb: [1, 2\n", "s.yaml: invalid YAML: expected ',' or ']', but got '<stream end>', "
                         "while parsing a flow sequence from line 2 (line 3)"),
    ("a: 1\n---\nb: 2\n", "s.yaml: holds more than one YAML document (a second '---'); a spec is one document (line 2)"),
    ("# nothing\n", "s.yaml: the file is empty; a spec is a mapping with at least name, dataset, model and train"),
    ("- a\n- b\n", "s.yaml: the top level must be a mapping of keys (name, dataset, model, train, ...), "
                   "got a list (line 1)"),
    ("a: &x [*x]\n", "s.yaml: a[0]: an alias refers to the list or mapping that contains it (line 1)"),
    ("a: *nowhere\n", "s.yaml: invalid YAML: found undefined alias 'nowhere' (line 1)"),
    ("1: a\n", "s.yaml: keys must be words, got int 1 (line 1)"),
    ("a: !!bool maybe\n", "s.yaml: a: cannot read 'maybe' as !!bool: not true or false (line 1)"),
    ("a: !!int ten\n", "s.yaml: a: cannot read 'ten' as !!int: invalid literal for int() with base 10: 'ten' (line 1)"),
    ("a: b\x01\n", "s.yaml: invalid YAML: the control character 0x0001 is not allowed in YAML text (line 1)"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "s.yaml: nesting is deeper than 64 levels (line 1)"),
])
def test_bad_yaml_is_one_line_naming_file_key_and_line(text, message):
    with pytest.raises(SpecError) as e:
        parse_yaml(text, "s.yaml")
    assert str(e.value) == message


def test_an_alias_bomb_is_refused_before_it_expands():
    # 9 levels of 9 aliases each: 9**9 (387 million) strings if expanded.
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    with pytest.raises(SpecError) as e:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert f"holds more than {MAX_NODES:,} values once its aliases are expanded" in str(e.value)
    assert e.value.file == "bomb.yaml" and e.value.line is not None


def test_missing_file_folder_and_non_utf8(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(SpecError) as e:
        load_yaml(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a folder, not a spec file"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(SpecError) as e:
        load_yaml(latin1)
    assert str(e.value) == f"{latin1}: is not UTF-8 text: byte 0xe9 cannot be decoded (line 2)"
