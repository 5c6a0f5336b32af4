"""ARM's error answers: `{"error": {"code", "message", "target"?}}`, with the codes and wording ARM and the AKS
resource provider use, so code that branches on `error.code` behaves here as against Azure."""
from __future__ import annotations

from ..common.errors import HttpError

NAMING_RULES = "Please see https://aka.ms/aks-naming-rules for more details."
PENDING_OPERATION = "See https://aka.ms/aks-pending-operation for more details"


class ArmError(HttpError):
    """An ARM error answer; `target` names the offending parameter, as the AKS resource provider does."""

    def __init__(self, status: int, code: str, message: str, *, target: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers=headers)
        self.target = target


class OperationError(Exception):
    """A long-running operation ends Failed with this ARM error (code and message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid_parameter(field: str, detail: str | None = None) -> ArmError:
    message = detail or f"The value of parameter {field} is invalid. {NAMING_RULES}"
    return ArmError(400, "InvalidParameter", message, target=field)


def property_change_not_allowed(field: str) -> ArmError:
    return ArmError(400, "PropertyChangeNotAllowed", f"Changing property '{field}' is not allowed.", target=field)


def operation_not_allowed(state: str) -> ArmError:
    return ArmError(409, "OperationNotAllowed",
                    f"Operation is not allowed: Another operation ({state}) is in progress, please wait for it to "
                    f"finish before starting a new operation. {PENDING_OPERATION}")


def precondition_failed(sent: str, current: str | None, what: str) -> ArmError:
    if current is None:
        message = f"The {what} does not exist, so the If-Match eTag '{sent}' cannot match."
    elif sent == "*":
        message = f"The {what} already exists (eTag '{current}') and If-None-Match is '*'."
    else:
        message = f"The eTag '{sent}' in the If-Match header does not match the current eTag '{current}' of the {what}."
    return ArmError(412, "PreconditionFailed", message)


def resource_not_found(kind: str, name: str, resource_group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound",
                    f"The Resource 'Microsoft.ContainerService/{kind}/{name}' under resource group "
                    f"'{resource_group}' was not found. For more details please go to "
                    f"https://aka.ms/ARMResourceNotFoundFix")


def pool_not_found(pool: str, cluster: str) -> ArmError:
    return ArmError(404, "NotFound", f"Could not find agent pool '{pool}' in managed cluster '{cluster}'.")


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def subscription_not_found(subscription: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")


def invalid_resource_type(path: str, api_version: str) -> ArmError:
    return ArmError(404, "InvalidResourceType",
                    f"The resource type for '{path}' could not be found in the namespace "
                    f"'Microsoft.ContainerService' for api version '{api_version}'.")


def bad_json(detail: str) -> ArmError:
    return ArmError(400, "InvalidRequestContent",
                    f"The request content was invalid and could not be deserialized: '{detail}'.")
