"""The API's error shape: ``{"detail": ..., "violations": [{"propertyPath", "title"}]}`` (Symfony style)."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, detail: str, violations: list[dict] | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.violations, self.headers = status, detail, violations, headers or {}

    def body(self) -> dict:
        body: dict = {"detail": self.detail}
        if self.violations is not None:
            body["violations"] = self.violations
        return body


def invalid(property_path: str, title: str, detail: str | None = None) -> ApiError:
    """A 400 with one violation, the way Wedof reports a bad parameter or a refused transition."""
    return ApiError(400, detail or f"{property_path}: {title}",
                    [{"propertyPath": property_path, "title": title}])


def not_found(detail: str) -> ApiError:
    return ApiError(404, detail)
