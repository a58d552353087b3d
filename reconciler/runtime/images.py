"""Resolving image patterns per region, before anything is planned.

A cluster whose ``image`` is a pattern runs, in each region, the image that region's provider
reports for it (``core/images.py`` chooses). A region where it does not resolve is a spec problem
naming the file, the field and the region; the planner holds that region only (``SkipKind.IMAGE``)
and the other regions deploy. Nothing is remembered between passes: a newly baked image is found
on the next pass, and the plan records which image each region resolved to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from providers import base as provider_base
from reconciler.core import errors, images, model
from reconciler.runtime import live as live_rt

GetProvider = Callable[[str, str], provider_base.Provider]


Reuse = dict[str, tuple[model.Application, model.Application]]
"""Application name -> (the parsed application, what it resolved to last time)."""


def resolve(state: model.DesiredState, get: GetProvider, reuse: Reuse | None = None) -> model.DesiredState:
    """``state`` with every pattern resolved per region, and a spec problem per region where it did not.

    With ``reuse`` (kept by the caller between passes), an application that resolves to the same images
    as last time is answered with last time's object: the pass's memos compare parsed applications by
    identity, so an unchanged fleet that names images by pattern is still an unchanged pass. The
    providers are asked every time (a newly baked image is found on the next pass).
    """
    kept: Reuse = {}
    seen: dict[tuple[str, str, str, images.ImagePattern], images.Resolution] = {}
    problems: list[errors.SpecProblem] = []
    apps: dict[str, model.Application] = {}
    for name, app in state.applications.items():
        if not any(c.image_pattern is not None for c in app.clusters):
            apps[name] = app
            continue
        clusters: list[model.ClusterSpec] = []
        for spec in app.clusters:
            pattern = spec.image_pattern
            if pattern is None:
                clusters.append(spec)
                continue
            found: list[tuple[str, images.Image]] = []
            for region in spec.regions:
                key = (spec.provider, spec.account, region, pattern)
                if key not in seen:
                    seen[key] = _find(get, spec.provider, spec.account, region, pattern)
                res = seen[key]
                if res.image is not None:
                    found.append((region, res.image))
                else:
                    problems.append(problem(spec, region, res.problem))
            clusters.append(dataclasses.replace(spec, images=tuple(found)))
        resolved = dataclasses.replace(app, clusters=tuple(clusters))
        before = reuse.get(name) if reuse is not None else None
        if before is not None and before[0] is app and before[1] == resolved:
            resolved = before[1]
        apps[name] = resolved
        kept[name] = (app, resolved)
    if reuse is not None:  # only the applications of this pass: what is kept follows the fleet
        reuse.clear()
        reuse.update(kept)
    if not problems and all(apps[n] is a for n, a in state.applications.items()):
        return state
    return dataclasses.replace(state, applications=apps, problems=tuple(state.problems) + tuple(problems))


def preview(state: model.DesiredState) -> model.DesiredState:
    """For the offline PR preview (no cloud): every region shows the pattern itself as its image."""
    apps: dict[str, model.Application] = {}
    for name, app in state.applications.items():
        apps[name] = dataclasses.replace(app, clusters=tuple(
            dataclasses.replace(c, images=tuple((r, images.Image(c.launch.image, c.launch.image)) for r in c.regions))
            if c.image_pattern is not None else c for c in app.clusters)
        ) if any(c.image_pattern is not None for c in app.clusters) else app
    return dataclasses.replace(state, applications=apps)


def unresolved(app: model.Application, get: GetProvider) -> list[errors.SpecProblem]:
    """The regions where ``app``'s patterns do not resolve now (``reconciler promote`` refuses them)."""
    state = model.DesiredState(commit="", applications={app.name: app})
    return list(resolve(state, get).problems)


def problem(spec: model.ClusterSpec, region: str, why: str) -> errors.SpecProblem:
    field = next((p for p, _ in spec.source.fields if p.endswith(".image")), "image")
    return errors.SpecProblem(spec.source.file, spec.source.line_of(field), field,
                              f"{spec.provider}/{spec.account}/{region}: {why}; {spec.name} is held in {region} "
                              "(its other regions deploy)")


def _find(get: GetProvider, provider: str, account: str, region: str,
          pattern: images.ImagePattern) -> images.Resolution:
    try:
        prov = get(provider, account)
        if not isinstance(prov, provider_base.ImageProvider):
            return images.Resolution(None, f"the {provider} provider does not resolve image patterns: give "
                                           f"image as the string the {provider} provider takes (docs/providers.md)")
        return images.choose(pattern, prov.find_images(region, pattern))
    except Exception as exc:  # a provider error, a missing account, a bug: that region waits, the rest goes on
        return images.Resolution(None, f"cannot list images: {live_rt.unexpected(exc, 'listing images')}")

