"""Block Kit for the Projects… modal, and parsing what comes back from it."""

from __future__ import annotations

from typing import Any

from bot.create.messages import escape
from bot.manage.views import plain, section
from bot.models import Project
from bot.slack.block_limits import SECTION_TEXT, clip, name_list

PROJECTS_CALLBACK_ID = "mp_account_projects"
BLOCK_PROJECT_CHOICE = "account_projects"
ACTION_PROJECT_CHOICE = "account_projects_select"
MAX_OFFERED = 100  # a static select's limit


def projects_modal(
    *,
    username: str,
    role: str,
    current: tuple[int, ...],
    offered: list[Project],
    projects: dict[int, Project],
    metadata: str,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Add or remove projects among `offered` (already capped by `shown_projects`); the others stay as
    they are. `notes` explain what is not offered and why."""
    offered = offered[:MAX_OFFERED]
    offered_ids = {p.id for p in offered}

    def option(project: Project) -> dict[str, Any]:
        suffix = f" ({project.id})"
        name = project.name if len(project.name) <= 75 - len(suffix) - 1 else project.name[:60] + "…"
        return {"text": plain(name + suffix), "value": str(project.id)}

    element: dict[str, Any] = {
        "type": "multi_static_select",
        "action_id": ACTION_PROJECT_CHOICE,
        "options": [option(p) for p in offered],
    }
    initial = [option(p) for p in offered if p.id in current]
    if initial:
        element["initial_options"] = initial
    fixed = [pid for pid in current if pid not in offered_ids]
    blocks: list[dict[str, Any]] = [
        section(f"`{escape(username)}` has the *{role}* role in each of its projects."),
        {
            "type": "input",
            "block_id": BLOCK_PROJECT_CHOICE,
            "optional": True,
            "label": plain("Projects"),
            "hint": plain("Add or remove projects; the account keeps its role in each."),
            "element": element,
        },
    ]
    if fixed:
        names = name_list([escape(projects[p].name) if p in projects else f"project {p}" for p in fixed])
        notes = (f"Also in {names}, which stay as they are.", *notes)
    for note in notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(note, SECTION_TEXT)}]})
    return {
        "type": "modal",
        "callback_id": PROJECTS_CALLBACK_ID,
        "title": plain("Account projects"),
        "submit": plain("Save"),
        "close": plain("Cancel"),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def shown_projects(offered: list[Project], current: tuple[int, ...]) -> list[Project]:
    """The projects the modal lists, and so the only ones a save may add or remove: what the person may
    grant, the account's own projects first, cut to the static select's limit. The submission computes
    its changes over exactly this list, so a project the modal could not show is never removed."""
    mine = set(current)
    ordered = sorted(offered, key=lambda project: project.id not in mine)  # stable: keeps name order
    return ordered[:MAX_OFFERED]


def selected_project_ids(values: dict[str, Any]) -> set[int] | None:
    """The chosen project ids, or None if the payload is not what the modal sends."""
    block = values.get(BLOCK_PROJECT_CHOICE)
    if not isinstance(block, dict):
        return set()
    chosen = (block.get(ACTION_PROJECT_CHOICE) or {}).get("selected_options") or []
    try:
        return {int(option["value"]) for option in chosen}
    except (KeyError, TypeError, ValueError):
        return None
