"""Per-provider access with Airflow's FAB auth manager: the roles a provider's config names (`access_roles`) read
and run that provider's DAGs and BatchOps pages only.

A DAG gets `access_control` for its provider's roles (DAG-level permissions, which the DAG processor syncs into
FAB when FabAuthManager is the auth manager; other auth managers ignore them). `python -m batchops sync-roles`
creates each such role with what the Airflow UI needs to show and run DAGs (FAB's Viewer and User permissions)
minus any permission on all DAGs: a role sees the DAGs its access_control grants, nothing else.
"""

from __future__ import annotations

from typing import Any

# What the role may do on each of its provider's DAGs (FAB resources "DAGs" and "DAG Runs", per DAG).
DAG_ACCESS = {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
ALL_DAGS = "DAGs"  # FAB's resource for every DAG: a permission on it would open every provider


def access_control(roles: list[str]) -> dict[str, dict[str, set[str]]] | None:
    """A DAG's access_control for these roles (None without roles: the auth manager's own rules apply)."""
    return {role: {resource: set(actions) for resource, actions in DAG_ACCESS.items()} for role in roles} or None


def role_permissions() -> list[tuple[str, str]]:
    """FAB's Viewer and User permissions without the ones on every DAG (menus on DAGs stay: the role lists its
    own)."""
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as sm,
    )

    return sorted({(action, resource) for action, resource in [*sm.VIEWER_PERMISSIONS, *sm.USER_PERMISSIONS]
                   if not (resource == ALL_DAGS and action != "menu_access")})


def sync_roles(roles: dict[str, list[str]]) -> list[str]:
    """Create each role (role -> the providers that name it) with role_permissions(), and take away any permission
    on every DAG it holds. Returns what was done, a line each."""
    from airflow.providers.fab.www.security_appless import ApplessAirflowSecurityManager
    from airflow.utils.session import create_session

    done = []
    wanted = role_permissions()
    with create_session() as session:
        manager = ApplessAirflowSecurityManager(session=session)
        for name, providers in sorted(roles.items()):
            role = manager.find_role(name)
            if role is None:
                role = manager.add_role(name)
                done.append(f"created role {name} (providers {', '.join(providers)})")
            held = {(p.action.name, p.resource.name): p for p in role.permissions}
            for action, resource in wanted:
                if (action, resource) not in held:
                    permission = manager.create_permission(action, resource)
                    manager.add_permission_to_role(role, permission)
            for (action, resource), permission in held.items():
                if resource == ALL_DAGS and action != "menu_access":
                    manager.remove_permission_from_role(role, permission)
                    done.append(f"took {action} on every DAG from role {name}")
        done.append(f"{len(roles)} provider role(s) in step: " + ", ".join(sorted(roles)) if roles else
                    "no provider names access_roles; nothing to do")
    return done


def roles_of(config_set: Any) -> dict[str, list[str]]:
    """role -> providers that name it in access_roles."""
    roles: dict[str, list[str]] = {}
    for provider in config_set.providers.values():
        for role in provider.access_roles:
            roles.setdefault(role, []).append(provider.provider_id)
    return roles
