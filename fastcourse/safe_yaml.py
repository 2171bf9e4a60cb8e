"""YAML for hand-edited configs: safe loading plus the checks yaml.safe_load leaves out.

    from fastcourse.safe_yaml import load_yaml
    raw = load_yaml("configs/mnist/cnn.yaml")      # dict, or a one-line ConfigError
    value = loads_value("[[2, 1e-3]]", "--set train.schedule.phases")   # one value (an override)

On top of yaml.SafeLoader (no Python objects are ever built):
- a key given twice, at any depth, is refused (safe_load silently keeps the last one);
- only true/false are booleans, as in YAML 1.2: `epochs: yes` stays the string "yes", so
  validation refuses it instead of training with epochs=True (= 1);
- size (1 MB), alias uses (100), the expanded node count (100,000: "billion laughs") and
  nesting depth (100) are bounded, so a hostile file cannot exhaust memory or the stack;
- an empty file or a top level that is not a mapping is refused.
Every error is a ConfigError of one line starting with the file (and line) and saying the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from fastcourse.errors import ConfigError

MAX_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_NODES = 100_000  # after expanding aliases
MAX_DEPTH = 100
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class SafeConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and limits on aliases and depth; see the module doc."""

    # YAML 1.1 reads yes/no/on/off/y/n as booleans; keep only true/false (YAML 1.2 core schema)
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream, source: str = "<string>"):
        super().__init__(stream)
        self.source = source
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise ConfigError(
                    f"{self.source}:{mark.line + 1}: more than {MAX_ALIASES} alias uses (*name); write the values out"
                )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ConfigError(
                f"{self.source}:{mark.line + 1}: nested more than {MAX_DEPTH} levels deep; flatten the config"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


SafeConfigLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(path: str | os.PathLike) -> dict:
    """The mapping in the YAML file at `path`; a one-line ConfigError for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"{path}: {size:,} bytes is too large for a config (limit {MAX_BYTES:,}); is this the right file?"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; `fastcourse list` shows the configs folder") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the path of a .yaml file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        ) from None
    return loads_yaml(text, str(path))


def loads_yaml(text: str, source: str = "<string>") -> dict:
    """The mapping in YAML `text`; `source` names it in error messages."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"{source}: too large for a config (limit {MAX_BYTES:,} bytes)")
    try:
        loader = SafeConfigLoader(text, source)  # the reader refuses control characters here
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{source}: character {chr(exc.character)!r} at offset {exc.position} is not allowed in YAML; remove it"
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: empty config; write at least the sections data:, model: and train:")
        if not isinstance(node, yaml.MappingNode):
            kind = {yaml.SequenceNode: "a list"}.get(type(node), f"the value {node.value!r}"[:60])
            raise ConfigError(
                f"{source}: the top level must be a mapping of sections (data:, model:, train:...), got {kind}"
            )
        _check_tree(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        raise ConfigError(f"{source}{at}: malformed YAML: {problem}; check the indentation and quoting there") from None
    except yaml.YAMLError as exc:  # other parser errors carry no position
        raise ConfigError(f"{source}: malformed YAML: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()


def loads_value(text: str, source: str) -> object:
    """One YAML value (an override's right-hand side), read as configs are; `source` names it
    (e.g. "--set train.epochs") in the one-line ConfigError for text that is not a plain value."""
    try:
        loader = SafeConfigLoader(text, source)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"{source}: character {chr(exc.character)!r} is not allowed; remove it") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node, source)
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError:  # a tag: !!python/object, !custom ...
        tag = re.search(r"!\S*", text)
        raise ConfigError(
            f"{source}: {tag.group(0) if tag else 'the value'} is a YAML tag, which a config "
            "does not take; write a plain value (a number, true/false, a string or a [list])"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        raise ConfigError(
            f"{source}: {text!r} is not valid YAML ({problem}{at}); close the brackets or "
            "quotes, or quote the whole value"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {text!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()


def _check_tree(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys and more than MAX_NODES nodes once aliases are expanded."""
    sizes: dict[int, int] = {}  # expanded size per node, so a shared (aliased) node is walked once

    def walk(node: yaml.Node, where: str, open_: set) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: {where or 'top'}: an alias refers to itself; remove the loop"
            )
        open_.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE:  # `<<: *base` merges are meant to be overridden
                    total += walk(value, where, open_)
                    continue
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(
                        f"{source}:{key.start_mark.line + 1}: {where or 'top'}: a key must be a "
                        "plain name, not a list or mapping"
                    )
                name = f"{where}.{key.value}" if where else str(key.value)
                line = key.start_mark.line + 1
                if (key.tag, key.value) in seen:
                    raise ConfigError(
                        f"{source}:{line}: {name}: duplicate key (first at line {seen[key.tag, key.value]}); keep one"
                    )
                seen[key.tag, key.value] = line
                total += 1 + walk(value, name, open_)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                total += walk(item, f"{where}[{i}]", open_)
        open_.discard(id(node))
        if total > MAX_NODES:
            raise ConfigError(
                f"{source}: expands to more than {MAX_NODES:,} values (aliases of aliases); write the values out"
            )
        sizes[id(node)] = total
        return total

    walk(root, "", set())


__all__ = ["load_yaml", "loads_yaml", "loads_value", "SafeConfigLoader", "MAX_BYTES", "MAX_ALIASES"]
