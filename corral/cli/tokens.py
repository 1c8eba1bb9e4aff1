"""`corral token create|list|revoke|rotate` and `corral auth rotate`: the API's named credentials.

A token's secret is printed once, when it is made (alone on stdout, so that
``$(corral token create ...)`` takes it), and never again: the store keeps
its sha256 only. `corral auth rotate` gives every token of the client config
a new secret and writes the config again after each one, so that a failure
halfway never leaves the config holding a secret that no longer opens
anything; a config still holding the cluster-key bootstrap tokens gets its
first named ones instead (``initial-admin``, ``initial-deploy``,
``initial-read``), which turns the cluster-key tokens off for good.
"""
from corral.cli.client import Client, ClientError, config_file_tokens, config_path, load_full_config, write_config
from corral.cli.output import render
from corral.cli.verbs import add_verb, nested

ROLES = ("admin", "deploy", "read")
INITIAL = "initial-"   # the names `auth rotate` gives the first named tokens of a cluster


def add_parser(sub):
    """Register `corral token` and `corral auth` with their nested verbs on the subparsers ``sub``."""
    p = add_verb(sub, "token", "named API tokens: make one (shown once), list them, revoke or rotate one (admin only)",
                 ["corral token create ci --role deploy --expires 30d", "corral token list",
                  "corral token revoke ci"])
    actions = nested(p, "action", "ACTION")
    c = add_verb(actions, "create",
                 "make a named token with a role and print it (once: the cluster keeps only its hash)",
                 ["corral token create ci --role deploy --expires 30d"])
    c.add_argument("name", help="the token's name (lower case, digits, . _ -); audit events name it")
    c.add_argument("--role", required=True, choices=ROLES,
                   help="admin (everything), deploy (apply, delete, scale, rollout, sync; no exec, tokens or backups) "
                        "or read (get, describe, events, logs)")
    c.add_argument("--expires", metavar="LIFETIME",
                   help="refused after this long: 90m, 12h, 30d, 2w (default: never)")
    ls = add_verb(actions, "list", "list the named tokens: role, state, created, expires, last used (never a secret)",
                  ["corral token list -o wide"])
    ls.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table",
                    help="table (default), wide (who made and revoked each), or the API's JSON or YAML")
    r = add_verb(actions, "revoke", "refuse a token from now on, on every reconciler", ["corral token revoke ci"])
    r.add_argument("name", help="the token's name")
    o = add_verb(actions, "rotate", "give a token a new secret (printed once); its old one is refused from now on",
                 ["corral token rotate ci"])
    o.add_argument("name", help="the token's name")

    a = add_verb(sub, "auth", "the client config's credentials", ["corral auth rotate"])
    verbs = nested(a, "action", "ACTION")
    add_verb(verbs, "rotate", "give every token of the client config a new secret, without stopping anything "
                              "(the first time: named tokens replace the cluster-key ones, which stop for good)",
             ["corral auth rotate"])


def handler_for(args):
    """The function serving `corral token` or `corral auth`, else None."""
    return {"token": cmd_token, "auth": cmd_auth}.get(args.command)


def cmd_token(args, client):
    if args.action == "list":
        print(render("tokens", client.get("/v1/tokens"), args.output))
        return 0
    if args.action == "create":
        from corral.auth import check_name, parse_expiry
        body = {"name": check_name(args.name), "role": args.role,
                "expiresIn": parse_expiry(args.expires) if args.expires else None}
        made = client.request("POST", "/v1/tokens", json=body)[1]
    else:
        made = client.request("POST", f"/v1/tokens/{args.name}/{args.action}", idempotent=args.action == "revoke")[1]
    import sys
    if args.action == "revoke":
        print(f"token/{made['name']} revoked: every reconciler refuses it from now on")
        return 0
    print(made["token"])
    print(f"token/{made['name']} ({made['role']}, expires {made['expires'] or 'never'}) "
          f"{'made' if args.action == 'create' else 'rotated'}: this is the only time it is shown",
          file=sys.stderr)
    return 0


def cmd_auth(args, client):
    """`corral auth rotate`: new secrets for the client config's tokens (see the module's docstring)."""
    import os
    urls, token, builders = load_full_config(os.environ)
    if os.environ.get("CORRAL_TOKEN"):
        raise ClientError("CORRAL_TOKEN is set: `corral auth rotate` rotates the tokens of the client config "
                          f"({config_path()}); unset it, or rotate that token with `corral token rotate NAME`")
    config = ClientConfig(urls, token, _config_tokens(), builders)
    me = client.get("/v1/whoami")
    if me["role"] != "admin":
        raise ClientError(f"the client config's token ({me['name']}) is a {me['role']} token: rotating needs "
                          f"an admin one")
    if me["name"].startswith("cluster-key/"):
        names = _first_named(config, client)
    else:
        names = _rotate_all(config, client, me["name"])
    print(f"client config {config.path}: {', '.join(names)} have new secrets; the old ones are refused from now on")
    return 0


class ClientConfig:
    """The client config's URLs, admin token, tokens by role and builders, written again on each change."""

    def __init__(self, urls, token, tokens, builders):
        self.urls, self.token, self.tokens, self.builders = urls, token, dict(tokens), builders
        self.path = config_path()

    def set(self, role, token):
        """Keep ``token`` as the config's ``role`` token (the admin one as ``token`` too) and write the config."""
        self.tokens[role] = token
        if role == "admin":
            self.token = token
        write_config(self.urls, self.token, tokens=self.tokens, builders=self.builders)


def _config_tokens():
    """``{role: token}`` the client config file keeps under ``tokens``."""
    try:
        return {role: t for role, t in config_file_tokens().items() if role in ROLES}
    except FileNotFoundError:
        raise ClientError(f"no client config at {config_path()}: `corral auth rotate` rotates the tokens kept there")


def _first_named(config, client):
    """Named tokens for a config of cluster-key tokens: the admin one first (made with the cluster-key
    token, kept at once), then the others with it."""
    made = client.request("POST", "/v1/tokens", json={"name": INITIAL + "admin", "role": "admin"})[1]
    config.set("admin", made["token"])
    admin = Client(config.urls, made["token"])
    for role in ("deploy", "read"):
        made = admin.request("POST", "/v1/tokens", json={"name": INITIAL + role, "role": role})[1]
        config.set(role, made["token"])
    return [INITIAL + role for role in ROLES]


def _rotate_all(config, client, admin_name):
    """A new secret for each named token the config holds, the admin one last (its old secret authorises
    the others' rotations); returns their names."""
    names = {}
    for role, token in config.tokens.items():
        if token and role != "admin" and token != config.token:
            names[role] = Client(config.urls, token).get("/v1/whoami")["name"]
    if len(set(names.values())) < len(names) or admin_name in names.values():
        raise ClientError("the client config holds one token under two roles: rotate it with `corral token rotate "
                          "NAME` and write the config by hand")
    names["admin"] = admin_name
    for role, name in names.items():
        made = client.request("POST", f"/v1/tokens/{name}/rotate")[1]
        config.set(role, made["token"])
    return list(names.values())
