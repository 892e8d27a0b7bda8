"""What `llmctl gateway validate` reports: each model's need and where, whether it fits
alone, which models can be resident together. Data only; the CLI renders it."""

from __future__ import annotations

from llmdeploy_cli.errors import ProfileError, ProfileIssue
from llmdeploy_cli.gateway import fit
from llmdeploy_cli.gateway.config import Gateway
from llmdeploy_cli.gateway.needs import Need, devices, need_of


def analyse(gw: Gateway, gpus_found: list[int] | None = None) -> dict:
    """The report; raises ProfileError when a model can never fit."""
    budgets, notes = devices(gw.spec.memory, gpus_found)
    needs: dict[str, Need] = {m.name: need_of(m, budgets) for m in gw.models.values()}
    pinned = [
        fit.Resident(n, needs[n].devices, pin=True)
        for n, m in gw.models.items()
        if m.pin or m.preload
    ]
    models, issues = [], []
    for name, m in gw.models.items():
        need = needs[name]
        others = [r for r in pinned if r.name != name]
        alone = fit.decide(budgets, [], need.devices, 0)
        with_pins = fit.decide(budgets, others, need.devices, 0)
        entry = {
            "name": name,
            "served_name": m.served_name,
            "aliases": m.aliases,
            "backend": m.backend.name,
            "engine_model": m.resolved.plan.endpoint.model,
            "need": need.devices,
            "need_source": need.source,
            "fits_alone": alone.kind != fit.NEVER,
            "evictable": m.evictable and not m.pin,
            "pin": m.pin,
            "preload": m.preload,
            "ttl": m.policy.ttl,
        }
        if need.note:
            entry["note"] = need.note
        if not m.evictable:
            entry["note"] = "routed to, never evicted: " + (
                "managed: false" if not m.profile.server.managed else "its engine manages models"
            )
        models.append(entry)
        bad = alone if alone.kind == fit.NEVER else with_pins
        if bad.kind == fit.NEVER:
            issues.append(
                ProfileIssue(
                    f"model '{name}' can never fit: {bad.reason}",
                    file=str(gw.file),
                    hint="lower its context or batch, raise the memory budget, or unpin others",
                )
            )
    if issues:
        raise ProfileError(issues)
    counted = {n: v.devices for n, v in needs.items() if v.devices}
    return {
        "name": gw.name,
        "file": str(gw.file),
        "listen": f"{gw.spec.listen.host}:{gw.spec.listen.port}",
        "auth": bool(gw.spec.api_key_env),
        "devices": budgets,
        "notes": notes,
        "warnings": gw.warnings,
        "models": models,
        "together": fit.co_resident(budgets, counted),
    }
