"""python-nest 4.2.0, unchanged, against a running Roost: the PIN flow (consent through the
HTTP forms, then request_token), reads through its stream, writes, a rule error as APIError,
and AuthorizationError after revocation. Prints one JSON line of what it saw.

Usage: python python_nest_flow.py URL DEMO_JSON [FRONT_URL [HEAT_COOL_THERMOSTAT_ID]]
"""
import json
import os
import re
import sys
import tempfile
import threading
import time

import requests

import nest
import nest.nest as nn

url, demo_path = sys.argv[1], sys.argv[2]
front = sys.argv[3] if len(sys.argv) > 3 else url
heat_cool_id = sys.argv[4] if len(sys.argv) > 4 else None
demo = json.load(open(demo_path))
product = demo["products"][1]  # the PIN-flow product
ca = demo["ca"]
# How python-nest users trust a private CA (requests reads it at every call).
os.environ["REQUESTS_CA_BUNDLE"] = ca


def pin_by_forms():
    s = requests.Session()
    s.verify = ca
    q = f"client_id={product['client_id']}&state=STATE"
    page = s.get(f"{url}/login/oauth2?{q}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = s.post(f"{url}/login", data={"login": demo["login"], "password": demo["password"], "csrf": csrf, "next": q},
               allow_redirects=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = s.post(f"{url}/login/oauth2",
               data={"csrf": csrf, "request": q, "decision": "allow", "home": demo["structure_id"]})
    return re.search(r'id="pin">([A-Z0-9]+)<', r.text).group(1)


def wait_for(pred, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


out = {}
# python-nest reads its stream in a thread; what that thread raises is recorded here.
thread_errors = []
threading.excepthook = lambda args: thread_errors.append(args.exc_type.__name__)
nn.API_URL = front
nn.ACCESS_TOKEN_URL = f"{url}/oauth2/access_token"
cache = tempfile.mktemp()
napi = nest.Nest(client_id=product["client_id"], client_secret=product["client_secret"],
                 access_token_cache_file=cache)
napi._session.verify = ca
napi.request_token(pin_by_forms())
out["token"] = napi.access_token.startswith("c.")

structure = napi.structures[0]
out["structure_name"] = structure.name
out["away"] = structure.away
thermostats = {t.device_id: t for t in structure.thermostats}
hp = thermostats[demo["devices"]["heat_pump_thermostat"]]
out["thermostat_name"] = hp.name_long
out["target"] = hp.target
out["protects"] = len(structure.smoke_co_alarms)
out["cameras"] = len(structure.cameras)
out["camera_streaming"] = structure.cameras[0].is_streaming

hp.target = 70
out["target_after_write"] = wait_for(lambda: hp.target == 70)
hp.temperature_scale = "C"
out["scale_c"] = wait_for(lambda: hp.temperature_scale == "C")
hp.target = 22.5
out["target_c"] = wait_for(lambda: hp.target == 22.5)
hp.temperature_scale = "F"
try:
    hp.mode = "cool"
    out["rule_error"] = None
except nest.nest.APIError as e:
    out["rule_error"] = str(e)
if heat_cool_id:
    hc = thermostats[heat_cool_id]
    hc.mode = "heat-cool"
    out["heat_cool_mode"] = wait_for(lambda: hc.mode == "heat-cool")
    hc.target = (64, 78)
    out["heat_cool_range"] = wait_for(lambda: tuple(hc.target) == (64, 78))
hp.fan = True
out["fan"] = wait_for(lambda: hp.fan is True)
structure.away = "away"
out["away_after_write"] = wait_for(lambda: structure.away == "away")
out["eco_on_away"] = wait_for(lambda: hp.mode == "eco")
structure.away = "home"
structure.set_eta("trip-1", __import__("datetime").datetime.utcnow() + __import__("datetime").timedelta(minutes=30))
out["eta_begin_set"] = wait_for(lambda: structure.eta_begin != "1970-01-01T00:00:00.000Z" and structure.eta_begin is not None)
cam = structure.cameras[0]
cam.is_streaming = False
out["camera_off"] = wait_for(lambda: cam.is_streaming is False)

requests.delete(f"{url}/oauth2/access_tokens/{napi.access_token}")
time.sleep(1)


def after_revoke(action):
    try:
        action()
        return "no error"
    except nest.nest.AuthorizationError:
        return "AuthorizationError"
    except nest.nest.APIError as e:
        return f"APIError: {e}"


# The open stream got auth_revoked: python-nest's stream thread raised AuthorizationError.
wait_for(lambda: thread_errors)
out["stream_after_revoke"] = thread_errors[0] if thread_errors else None
# A write and a token check are refused.
# (python-nest's own write call: its cached state is gone once its stream saw auth_revoked.)
out["write_after_revoke"] = after_revoke(
    lambda: napi._put("/devices/thermostats/" + demo["devices"]["heat_pump_thermostat"], {"target_temperature_f": 71}))
# (Through a 307, python-nest itself reports a 401 as APIError rather than AuthorizationError.)
try:
    out["check_after_revoke"] = "authorization required" if napi.invalid_access_token else "valid"
except nest.nest.APIError as e:
    out["check_after_revoke"] = f"APIError: {e}"
print(json.dumps(out))
