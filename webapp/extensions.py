"""The web application's singletons, created once and bound to the app in ``create_app``."""

from flask_jwt_extended import JWTManager

jwt = JWTManager()
