"""A laboratory's station for blind double review: one person per role, each logged in."""

import pytest

from marrowdiff.web.accounts import Accounts
from marrowdiff.web.app import create_app

from .test_webapp import PAGE, PASSWORD, local, station

PEOPLE = {"ana": "reviewer", "ben": "reviewer", "cleo": "adjudicator", "sam": "signer"}


@pytest.fixture
def lab(stage_run, tmp_path):
    """One station with accounts, and a logged-in client per person."""
    accounts = Accounts(tmp_path / "review")
    for name, role in PEOPLE.items():
        accounts.add(name, role, PASSWORD)
    review_station = station(stage_run, tmp_path / "review")
    app = create_app(review_station, accounts=accounts)
    clients = {}
    for name in PEOPLE:
        clients[name] = local(app)
        login = {"name": name, "password": PASSWORD}
        response = clients[name].post("/api/login", headers=PAGE, json=login)
        assert response.status_code == 200, response.text
    return review_station, clients
