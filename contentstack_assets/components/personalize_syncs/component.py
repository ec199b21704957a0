"""The syncs of a spec as a Dagster component: `syncs:` inline in a `defs.yaml`, or `syncs_file:` beside it.

Both forms are checked by the spec's own models (spec/); an error names the `defs.yaml`, its line, the
sync and the key, and the component loads whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from pydantic import ConfigDict, PrivateAttr

from contentstack_assets.components.personalize_syncs.scaffolder import TYPE_NAME, PersonalizeSyncsScaffolder
from contentstack_assets.spec import SpecError, SyncsSpec, load_spec, spec_from_data
from contentstack_assets.translator import PersonalizeTranslator


def _render_templates(context: dg.ResolutionContext, value: Any) -> Any:
    """dg templating (`{{ env.VAR }}`) in the syncs, leaving every other string as written: Dagster's
    default resolver reads any string as a Python literal (`"042"` would become 42)."""
    if isinstance(value, dict):
        return {key: _render_templates(context.at_path(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_templates(context.at_path(index), item) for index, item in enumerate(value)]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        rendered = context.resolve_value(value)
        return str(rendered) if isinstance(rendered, int | float) else rendered
    return value


@dg.scaffold_with(PersonalizeSyncsScaffolder)
class PersonalizeSyncsComponent(dg.Component, dg.Resolvable, dg.Model):
    """Syncs from SQL to Contentstack Personalize: per sync, source -> (mapped) -> push assets, checks, a
    job, a source-change sensor, and the schedule or automation condition the spec asks for.

    Give `syncs:` (the list of a `syncs.yaml`, with dg templating such as `{{ env.VAR }}`) or `syncs_file:`
    (a `syncs.yaml` relative to this `defs.yaml`, `${VAR}` read from the environment). Subclass and override
    `get_translator` to set asset key prefixes, groups, owners and tags in Python.
    """

    syncs: Annotated[
        list[dict[str, Any]] | None,
        dg.Resolver(
            _render_templates,
            model_field_type=list[dict[str, Any]] | None,
            description="the syncs, exactly as under `syncs:` in a syncs.yaml",
        ),
    ] = None
    syncs_file: str | None = None

    _spec: SyncsSpec | None = PrivateAttr(None)

    @classmethod
    def get_model_cls(cls) -> type[dg.Model]:
        # unknown attributes reach `load`, which names them in one paragraph with the file and line
        class Attributes(cls.model()):
            model_config = ConfigDict(extra="allow")

        Attributes.__name__ = cls.model().__name__
        return Attributes

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> PersonalizeSyncsComponent:
        positions = context.resolution_context.source_position_tree
        defs_file = Path(positions.position.filename) if positions else context.path / "defs.yaml"

        def line_of(loc: tuple) -> int | None:
            if positions is None:
                return None
            position, _ = positions.lookup_closest_and_path(["attributes", *loc], None)
            return position.start.line if position else None

        def fail(loc: tuple, message: str) -> SpecError:
            line = line_of(loc)
            return SpecError(f"{defs_file}{f':{line}' if line else ''}: {message}")

        for key in (attributes.model_extra or {}) if attributes is not None else {}:
            raise fail(
                (key,),
                f"key 'attributes.{key}': unknown attribute of {TYPE_NAME}: give `syncs` (the list of syncs) "
                "or `syncs_file` (a syncs.yaml relative to this file)",
            )
        component = super().load(attributes, context)
        if (component.syncs is None) == (component.syncs_file is None):
            raise fail(
                ("syncs_file",) if component.syncs_file else (),
                "give `syncs` (the list of syncs) or `syncs_file` (a syncs.yaml relative to this file), "
                + ("not both" if component.syncs_file else "one of the two"),
            )
        if component.syncs_file is not None:
            try:
                component._spec = load_spec(defs_file.parent / component.syncs_file)
            except SpecError as error:
                raise fail(("syncs_file",), f"syncs_file: {error}") from None
        else:
            component._spec = spec_from_data({"syncs": component.syncs}, defs_file, line_of)
        return component

    @property
    def spec(self) -> SyncsSpec:
        """The checked spec (available once the component is loaded)."""
        if self._spec is None:
            if self.syncs_file is not None:
                self._spec = load_spec(Path(self.syncs_file))
            elif self.syncs is not None:
                self._spec = spec_from_data({"syncs": self.syncs}, Path("<syncs>"))
            else:
                raise SpecError(f"{TYPE_NAME}: give `syncs` or `syncs_file`")
        return self._spec

    def get_translator(self) -> PersonalizeTranslator:
        """The labels hook; override to set key prefixes, groups, owners and tags in Python."""
        return PersonalizeTranslator()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from contentstack_assets.syncs.build import build_definitions

        return build_definitions(self.spec, translator=self.get_translator())
