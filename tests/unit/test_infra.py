"""Infrastructure as code, checked here without Azure and without the bicep CLI.

- every `.bicep` file under infra/ parses with tree-sitter-bicep (and the check can fail);
- the Function App's settings match what shared/core/settings.py reads (names extracted with `ast`, so
  new settings are tracked automatically), apart from commented allow-lists;
- each role the code's clients need is assigned to the app's identity, from one role map;
- no secret in outputs, parameter defaults or app settings; storage, vault and telemetry hardened;
- infra/scripts/register-app.sh requests exactly infra/graph-permissions.json, with the redirect URIs
  the app serves (web, and the console's spa one), exposes the delegated scope access_as_user, and
  never prints or passes on the command line the client secret;
- infra/scripts/scope-rooms.ps1 scopes the same application permissions.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

from shared.api.auth import ACCESS_AS_USER
from shared.core.settings import TIMER_SCHEDULES

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SETTINGS_PY = ROOT / "shared" / "core" / "settings.py"
CLIENTS_PY = ROOT / "shared" / "storage" / "clients.py"
REGISTER_APP = INFRA / "scripts" / "register-app.sh"
SCOPE_ROOMS = INFRA / "scripts" / "scope-rooms.ps1"
GRAPH = "00000003-0000-0000-c000-000000000000"

# Settings shared/core/settings.py reads that must NOT be set in Azure.
LOCAL_ONLY_SETTINGS = {
    # A connection string: Azurite locally. In Azure shared keys are off, so the app and the host
    # use the identity-based AzureWebJobsStorage__accountName / __clientId instead.
    "AzureWebJobsStorage",
    # The local stack's TLS CA for its HTTPS emulators; Azure endpoints use public CAs.
    "BB_CA_BUNDLE",
    # The local stack's client-secret credential standing in for the managed identity.
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    # Outgoing webhooks to loopback over http: the local stack's receivers only (issue 16).
    "BB_WEBHOOKS_ALLOW_LOOPBACK",
}

# Settings the Bicep may set although shared/ never reads them: the platform reads them.
PLATFORM_SETTINGS = {
    # Functions host: identity-based host storage (settings.py reads only __accountName/__clientId).
    "AzureWebJobsStorage__credential",
    # Functions host and the Azure Monitor OpenTelemetry exporter: where telemetry goes, and that it
    # is sent with the managed identity's Entra token (local auth is disabled).
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    # Python worker: configures azure-monitor-opentelemetry itself (infra/README.md, Observability).
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    # Python worker tuning, allowed if someone sets them.
    "PYTHON_THREADPOOL_THREAD_COUNT",
    "PYTHON_ENABLE_DEBUG_LOGGING",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    # Functions host, Event Hubs extension: the identity-based connection "BB_EVENTHUB" of
    # functions/graph_eventhub.py's trigger, and whether that function runs (issue 17).
    "BB_EVENTHUB__fullyQualifiedNamespace",
    "BB_EVENTHUB__credential",
    "BB_EVENTHUB__clientId",
    "AzureWebJobs.graph_eventhub_notifications.Disabled",
}

# Read by the Functions runtime on other plans, but deprecated on Flex Consumption (the runtime and
# its version live in functionAppConfig; deployment comes from the blob container): never set them.
FLEX_DEPRECATED_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
}

# Built-in Azure role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILT_IN_ROLE_IDS = {
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "eventHubsDataReceiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "eventHubsDataSender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
ROLE_SCOPE_TYPES = {
    "storageTableDataContributor": "Microsoft.Storage/storageAccounts",
    "storageQueueDataContributor": "Microsoft.Storage/storageAccounts",
    "storageBlobDataOwner": "Microsoft.Storage/storageAccounts",
    "keyVaultSecretsOfficer": "Microsoft.KeyVault/vaults",
    "monitoringMetricsPublisher": "Microsoft.Insights/components",
    "eventHubsDataReceiver": "Microsoft.EventHub/namespaces/eventhubs",
}
# Which SDK in shared/storage/clients.py needs which role on the app's identity.
CLIENT_MODULE_ROLES = {
    "azure.data.tables": "storageTableDataContributor",
    "azure.storage.queue": "storageQueueDataContributor",
    "azure.storage.blob": "storageBlobDataOwner",
    "azure.keyvault.secrets": "keyVaultSecretsOfficer",
}
# Needed whatever the code imports: the Functions host's blobs and the Flex deployment package, and
# telemetry ingestion with an Entra token.
PLATFORM_ROLES = {"storageBlobDataOwner", "monitoringMetricsPublisher"}

# Registered delegated permissions the code does not itself request: `email` makes the ID token
# carry the email claim when a client asks for it; harmless, consented with the rest.
REGISTERED_ONLY_SCOPES = {"email"}
# Microsoft Graph permission ids (GRAPH.md §2.1; OIDC scope ids from public app registrations).
KNOWN_GRAPH_IDS = {
    ("openid", "Scope"): "37f7f235-527c-4136-accd-4a02d197296e",
    ("profile", "Scope"): "14dad69e-099b-42c9-810b-d002981feec1",
    ("email", "Scope"): "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0",
    ("offline_access", "Scope"): "7427e0e9-2fba-42fe-b0c0-848c9e6a8182",
    ("User.Read", "Scope"): "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    ("Calendars.ReadBasic", "Scope"): "662d75ba-a364-42ad-adee-f5f880ea4878",
    ("Calendars.Read", "Scope"): "465a38f9-76ea-45b9-9f34-9e8b0d4b0b42",
    ("Calendars.ReadWrite", "Scope"): "1ec239c2-d7c9-4623-a91a-a9775856bb36",
    ("Calendars.ReadWrite.Shared", "Scope"): "12466101-c9b8-439a-8589-dd09ee67e8e9",
    ("Place.Read.All", "Scope"): "cb8f45a0-5c2e-4ea1-b803-84b870a7d7ec",
    ("Calendars.Read", "Role"): "798ee544-9d2d-430c-a058-570e29e34338",
    ("Calendars.ReadWrite", "Role"): "ef54d2bf-783f-4e0f-bca1-3210c0444d99",
    ("Place.Read.All", "Role"): "913b9306-0ce1-42b8-9137-6a7df690a760",
}
# The OAuth redirect routes, below BB_PUBLIC_BASE_URL (used if functions/connect.py is not there).
REDIRECT_PATHS = ["/oauth/callback", "/oauth/adminconsent"]


def code_graph_permissions() -> tuple[set[str], set[str]]:
    """(delegated scopes, application permissions) the code requests: shared/graph/permissions.py.

    Falls back to GRAPH.md's list (§1.2 + §2.2) where shared/graph/permissions.py does not exist yet, so
    this test does not depend on the order in which the two land.
    """
    try:
        permissions = importlib.import_module("shared.graph.permissions")
    except (
        ModuleNotFoundError
    ) as err:  # pragma: no cover - only before shared/graph/permissions.py lands
        if err.name != "shared.graph.permissions":
            raise
        return (
            {"openid", "profile", "offline_access", "User.Read", "Calendars.Read"}
            | {"Calendars.ReadWrite", "Calendars.ReadWrite.Shared", "Place.Read.All"},
            {"Calendars.Read", "Calendars.ReadWrite", "Place.Read.All"},
        )
    delegated = set(permissions.OIDC_SCOPES) | set(permissions.GRAPH_DELEGATED_SCOPES)
    # A free/busy-only connection asks for a subset plus Calendars.ReadBasic (issue 19).
    delegated |= set(getattr(permissions, "FREE_BUSY_DELEGATED_SCOPES", ()))
    return delegated, set(permissions.GRAPH_APPLICATION_PERMISSIONS)


def oauth_redirect_paths() -> list[str]:
    """The anonymous oauth/* routes of functions/connect.py (read with ast, not imported)."""
    connect = ROOT / "functions" / "connect.py"
    if not connect.exists():  # pragma: no cover - only before the connect blueprint exists
        return REDIRECT_PATHS
    routes = [
        kw.value.value
        for n in ast.walk(ast.parse(connect.read_text()))
        if isinstance(n, ast.Call)
        for kw in n.keywords
        if kw.arg == "route"
        and isinstance(kw.value, ast.Constant)
        and str(kw.value.value).startswith("oauth/")
    ]
    return sorted(f"/{route}" for route in routes)


# --- Bicep, read with tree-sitter ------------------------------------------------------------------


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as 'line:col type'."""
    found: list[str] = []
    stack = [_parser().parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            found.append(
                f"{row + 1}:{col + 1} {'MISSING ' + node.type if node.is_missing else 'ERROR'}"
            )
        stack.extend(node.children)
    return sorted(found)


def text(node: Node) -> str:
    return (node.text or b"").decode()


def string_value(node: Node | None) -> str | None:
    """The value of a plain string literal (no interpolation), else None."""
    if node is None or node.type != "string":
        return None
    if any(c.type == "interpolation" for c in node.children):
        return None
    return "".join(text(c) for c in node.children if c.type == "string_content")


def properties(obj: Node) -> dict[str, Node]:
    """An object literal's properties: key -> value node."""
    assert obj.type == "object", text(obj)[:80]
    result: dict[str, Node] = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        name = string_value(key) if key.type == "string" else text(key)
        assert name is not None, f"computed key: {text(key)}"
        result[name] = value
    return result


def body(decl: Node) -> Node:
    """The object body of a resource/module declaration (through `if (...)` and `[for ...]`)."""
    node = decl.named_children[-1]
    while node.type in ("if_statement", "for_statement"):
        node = node.named_children[-1]
    return node


@dataclass
class Declaration:
    kind: str  # param, var, resource, module, output
    name: str
    node: Node
    decorators: list[str]
    type_string: str | None = None  # resource type or module path
    value: Node | None = None  # param default, var value, output value, resource/module body

    @property
    def existing(self) -> bool:
        return any(c.type == "existing" for c in self.node.children)


@dataclass
class BicepFile:
    path: Path
    source: bytes
    decls: list[Declaration]

    def get(self, kind: str, name: str) -> Declaration | None:
        return next((d for d in self.decls if d.kind == kind and d.name == name), None)

    def all(self, kind: str) -> list[Declaration]:
        return [d for d in self.decls if d.kind == kind]

    def resources(self, type_prefix: str) -> list[Declaration]:
        return [
            d for d in self.all("resource") if (d.type_string or "").split("@")[0] == type_prefix
        ]

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


_KINDS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
}


@functools.cache
def bicep(path: Path) -> BicepFile:
    source = path.read_bytes()
    root = _parser().parse(source).root_node
    decls: list[Declaration] = []
    pending: list[str] = []
    for child in root.named_children:
        if child.type == "decorators":
            # `@secure()` -> "secure": the called function's name.
            pending = [
                text(d.named_children[0].named_children[0]).split(".")[-1]
                for d in child.named_children
            ]
            continue
        kind = _KINDS.get(child.type)
        if kind is None:
            pending = []
            continue
        named = child.named_children
        name = text(next(c for c in named if c.type == "identifier"))
        decl = Declaration(kind, name, child, pending)
        pending = []
        if kind in ("resource", "module"):
            decl.type_string = string_value(next(c for c in named if c.type == "string"))
            decl.value = body(child)
        elif kind == "param":
            has_default = any(c.type == "=" for c in child.children)
            decl.value = named[-1] if has_default else None
        else:
            decl.value = named[-1]
        decls.append(decl)
    return BicepFile(path, source, decls)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def module_target(caller: BicepFile, module: Declaration) -> BicepFile:
    assert module.type_string and not module.type_string.startswith("br"), module.type_string
    return bicep((caller.path.parent / module.type_string).resolve())


def callers(target: BicepFile) -> list[tuple[BicepFile, Declaration]]:
    found = []
    for path in bicep_files():
        caller = bicep(path)
        for module in caller.all("module"):
            if module_target(caller, module).path == target.path.resolve():
                found.append((caller, module))
    return found


def trace(file: BicepFile, node: Node) -> tuple[BicepFile, Node]:
    """Follow an expression through vars, params (to the caller's argument, else the default) and
    module outputs, to the expression that finally produces the value."""
    if node.type == "parenthesized_expression":
        return trace(file, node.named_children[0])
    if node.type == "identifier":
        name = text(node)
        if (var := file.get("var", name)) and var.value is not None:
            return trace(file, var.value)
        if param := file.get("param", name):
            for caller, module in callers(file):
                args = properties(module.value).get("params")
                if args is not None and name in properties(args):
                    return trace(caller, properties(args)[name])
            if param.value is not None:
                return trace(file, param.value)
        return file, node
    if node.type == "member_expression":
        # <module>.outputs.<name>
        parts = text(node).split(".")
        if len(parts) == 3 and parts[1] == "outputs" and (mod := file.get("module", parts[0])):
            target = module_target(file, mod)
            output = target.get("output", parts[2])
            assert output is not None and output.value is not None, text(node)
            return trace(target, output.value)
    return file, node


def app_settings_decl() -> tuple[BicepFile, Declaration]:
    found = []
    for path in bicep_files():
        file = bicep(path)
        for res in file.resources("Microsoft.Web/sites/config"):
            if string_value(properties(res.value).get("name")) == "appsettings":
                found.append((file, res))
    assert len(found) == 1, f"expected one appsettings resource, found {len(found)}"
    return found[0]


def app_settings() -> dict[str, tuple[BicepFile, Node]]:
    """Every app setting the Function App gets: name -> (file, value expression)."""
    file, res = app_settings_decl()
    settings: dict[str, tuple[BicepFile, Node]] = {}

    def collect(f: BicepFile, node: Node) -> None:
        f, node = trace(f, node)
        if node.type == "object":
            for key, value in properties(node).items():
                settings[key] = (f, value)
        elif node.type == "call_expression" and text(node.named_children[0]) == "union":
            for arg in node.named_children[1].named_children:
                collect(f, arg)
        else:
            raise AssertionError(f"{f.rel}: cannot read app settings from {text(node)[:80]}")

    collect(file, properties(res.value)["properties"])
    return settings


def literal(node: Node) -> object:
    """A literal's Python value (bool, int, plain string), else the expression text."""
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "string" and (value := string_value(node)) is not None:
        return value
    return text(node)


def traced_literal(file: BicepFile, node: Node) -> object:
    return literal(trace(file, node)[1])


def the_resource(type_prefix: str) -> tuple[BicepFile, Declaration]:
    found = [
        (bicep(p), d)
        for p in bicep_files()
        for d in bicep(p).resources(type_prefix)
        if not d.existing
    ]
    assert len(found) == 1, f"expected one {type_prefix}, found {len(found)}"
    return found[0]


def identifier_use(file: BicepFile, name: str) -> Node:
    """Some identifier node with this name in the file (to start a trace from)."""
    stack = [_parser().parse(file.source).root_node]
    while stack:
        node = stack.pop()
        parent = node.parent
        # A use of the name, not its declaration.
        if (
            node.type == "identifier"
            and text(node) == name
            and parent
            and parent.type not in _KINDS
        ):
            return node
        stack.extend(node.children)
    raise AssertionError(f"{name} is not used in {file.rel}")


# --- shared/core/settings.py and shared/storage/clients.py, read with ast --------------------------------------


def reader_methods() -> set[str]:
    """The public methods of shared/core/settings.py's _Reader: each takes the setting name first."""
    tree = ast.parse(SETTINGS_PY.read_text())
    reader = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Reader")
    return {
        f.name
        for f in reader.body
        if isinstance(f, ast.FunctionDef)
        and not f.name.startswith("_")
        and [a.arg for a in f.args.args[:2]] == ["self", "name"]
    }


def settings_read_by_code() -> dict[str, str | None]:
    """Setting name -> the literal default load_settings applies (None: no default).

    Any _Reader method counts, so settings added by other issues are tracked without editing this.
    The timer schedules are checked in a loop over `TIMER_SCHEDULES`, whose values are the ones
    every deployment sets; they count as those settings' defaults here.
    """
    tree = ast.parse(SETTINGS_PY.read_text())
    load = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "load_settings"
    )
    readers = {
        target.id
        for n in ast.walk(load)
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Name)
        and n.value.func.id == "_Reader"
        for target in n.targets
        if isinstance(target, ast.Name)
    }
    assert readers, "load_settings no longer builds a _Reader: update this test"
    timer_loops = {
        n.target.id
        for n in ast.walk(load)
        if isinstance(n, ast.For)
        and isinstance(n.target, ast.Name)
        and isinstance(n.iter, ast.Name)
        and n.iter.id == "TIMER_SCHEDULES"
    }
    methods = reader_methods()
    found: dict[str, str | None] = {}
    for n in ast.walk(load):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id in readers
            and n.func.attr in methods
        ):
            assert n.args, ast.unparse(n)
            if isinstance(n.args[0], ast.Name) and n.args[0].id in timer_loops:
                found.update(TIMER_SCHEDULES)
                continue
            assert isinstance(n.args[0], ast.Constant), ast.unparse(n)
            assert isinstance(n.args[0].value, str), ast.unparse(n)
            default = n.args[1] if len(n.args) > 1 else None
            found[n.args[0].value] = (
                str(default.value) if isinstance(default, ast.Constant) else None
            )
    return found


def code_default(name: str) -> str | None:
    """The literal default load_settings applies to a setting, if it has one."""
    return settings_read_by_code()[name]


def modules_imported_by_clients() -> set[str]:
    tree = ast.parse(CLIENTS_PY.read_text())
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module:
            names.add(n.module)
        elif isinstance(n, ast.Import):
            names.update(a.name for a in n.names)
    return names


# --- syntax -----------------------------------------------------------------------------------------


def test_there_is_bicep_to_check() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert "main.bicep" in names
    assert len(names) >= 5, names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == [], path


def test_the_syntax_check_can_fail() -> None:
    broken = textwrap.dedent(
        """\
        param name string
        resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {
          name: name
          properties: {
            minimumTlsVersion: 'TLS1_2
          }
        """
    ).encode()
    assert syntax_errors(broken)
    assert syntax_errors(b"var x = [for i in range(0, 3) i]\n")
    assert syntax_errors(b"output o string = \n")


def test_modules_point_at_files_that_exist() -> None:
    for path in bicep_files():
        file = bicep(path)
        for module in file.all("module"):
            assert module_target(file, module).path.is_file(), (file.rel, module.type_string)


# --- azd shape --------------------------------------------------------------------------------------


def test_main_is_subscription_scoped_with_the_azd_token_and_tags() -> None:
    main = bicep(INFRA / "main.bicep")
    source = main.source.decode()
    assert re.search(r"^targetScope\s*=\s*'subscription'", source, re.M)
    token = main.get("var", "resourceToken")
    assert token and text(token.value).replace(" ", "") == (
        "toLower(uniqueString(subscription().id,environmentName,location))"
    )
    tags = main.get("var", "tags")
    assert tags and text(properties(tags.value)["azd-env-name"]) == "environmentName"
    (rg,) = main.resources("Microsoft.Resources/resourceGroups")
    assert text(properties(rg.value)["tags"]) == "tags"
    # Every module that tags its resources gets the azd tags.
    for module in main.all("module"):
        if module_target(main, module).get("param", "tags"):
            args = properties(properties(module.value)["params"])
            assert "tags" in args and text(args["tags"]) == "tags", module.name


def test_function_app_is_tagged_for_azd_service_api() -> None:
    file, site = the_resource("Microsoft.Web/sites")
    _, tags = trace(file, properties(site.value)["tags"])
    assert re.search(r"'azd-service-name':\s*serviceName", text(tags)), text(tags)
    api = bicep(INFRA / "app" / "api.bicep")
    service = api.get("param", "serviceName")
    assert service and string_value(service.value) == "api"
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert re.search(r"^name:\s*bookingbridge\s*$", azure_yaml, re.M)
    service_block = re.search(r"^  api:\n((?:    .*\n)+)", azure_yaml, re.M)
    assert service_block, azure_yaml
    fields = dict(re.findall(r"^    (\w+):[ \t]*(\S*)", service_block.group(1), re.M))
    assert fields == {"project": ".", "language": "python", "host": "function", "hooks": ""}
    # azd builds the console before packaging, on every platform it runs on.
    hooks = re.findall(
        r"^        (posix|windows):\n(?:          .*\n)*?          run: (.+)$",
        service_block.group(1),
        re.M,
    )
    assert sorted(hooks) == [("posix", "make console"), ("windows", "make console")], hooks
    assert re.search(r"^      prepackage:$", service_block.group(1), re.M)


def test_parameters_file_maps_azd_environment_variables_only() -> None:
    data = json.loads((INFRA / "main.parameters.json").read_text())
    values = {k: v["value"] for k, v in data["parameters"].items()}
    main = bicep(INFRA / "main.bicep")
    for name, value in values.items():
        assert main.get("param", name), f"{name} is not a parameter of main.bicep"
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", value), f"{name}: literal value {value!r}"
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["clientId"] == "${BB_CLIENT_ID}"


def test_flex_consumption_plan_and_runtime() -> None:
    file, plan = the_resource("Microsoft.Web/serverfarms")
    sku = properties(properties(plan.value)["sku"])
    assert (literal(sku["name"]), literal(sku["tier"])) == ("FC1", "FlexConsumption")

    file, site = the_resource("Microsoft.Web/sites")
    props = properties(properties(site.value)["properties"])
    assert literal(props["httpsOnly"]) is True
    config = properties(props["functionAppConfig"])
    runtime = properties(config["runtime"])
    assert traced_literal(file, runtime["name"]) == "python"
    assert traced_literal(file, runtime["version"]) == "3.11"
    scale = properties(config["scaleAndConcurrency"])
    main = bicep(INFRA / "main.bicep")
    for name in ("instanceMemoryMB", "maximumInstanceCount"):
        source, _ = trace(file, scale[name])
        assert source.rel == "infra/main.bicep" and main.get("param", name), name
    # One always-ready instance for the HTTP group by default: the Graph webhook has 3 s.
    _, ready = trace(file, scale["alwaysReady"])
    assert re.search(r"name:\s*'http',\s*instanceCount:\s*alwaysReadyHttpInstances", text(ready))
    always_ready = main.get("param", "alwaysReadyHttpInstances")
    assert always_ready and always_ready.value is not None and literal(always_ready.value) == 1
    identity = properties(properties(site.value)["identity"])
    assert literal(identity["type"]) == "UserAssigned"
    deployment = properties(properties(config["deployment"])["storage"])
    auth = properties(deployment["authentication"])
    assert literal(auth["type"]) == "UserAssignedIdentity"


# --- app settings -----------------------------------------------------------------------------------


def test_settings_extraction_sees_the_known_settings() -> None:
    read = set(settings_read_by_code())
    # If this fails, the extraction broke, not the Bicep.
    assert {"BB_KEY_VAULT_URL", "BB_CLIENT_ID", "AzureWebJobsStorage__accountName"} <= read


def test_every_setting_the_code_reads_is_set_and_nothing_else() -> None:
    read = set(settings_read_by_code())
    bicep_names = set(app_settings())
    assert read >= LOCAL_ONLY_SETTINGS, f"stale LOCAL_ONLY_SETTINGS: {LOCAL_ONLY_SETTINGS - read}"
    missing = read - LOCAL_ONLY_SETTINGS - bicep_names
    assert not missing, (
        f"read by shared/core/settings.py but not set in the Bicep app settings: {missing}"
    )
    unread = bicep_names - read - PLATFORM_SETTINGS
    assert not unread, f"set in the Bicep but read by nothing: {unread}"
    assert not (bicep_names & LOCAL_ONLY_SETTINGS), bicep_names & LOCAL_ONLY_SETTINGS
    assert not (bicep_names & FLEX_DEPRECATED_SETTINGS), bicep_names & FLEX_DEPRECATED_SETTINGS


def test_identity_based_connections_use_the_user_assigned_identity() -> None:
    settings = app_settings()
    assert literal(settings["AzureWebJobsStorage__credential"][1]) == "managedidentity"
    client_ids = {
        name: trace(*settings[name])
        for name in ("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID")
    }
    for name, (file, node) in client_ids.items():
        assert file.rel == "infra/core/identity/user-assigned-identity.bicep", name
        assert text(node) == "identity.properties.clientId", name
    account_file, _ = trace(*settings["AzureWebJobsStorage__accountName"])
    assert account_file.rel == "infra/core/storage/storage-account.bicep"
    auth_file, auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    match = re.fullmatch(r"'ClientId=\$\{(\w+)\};Authorization=AAD'", text(auth))
    assert match, text(auth)
    _, client_id = trace(auth_file, identifier_use(auth_file, match.group(1)))
    assert text(client_id) == "identity.properties.clientId"
    assert literal(settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"][1]) == "true"
    # The site runs as the same identity the settings name.
    site_file, site = the_resource("Microsoft.Web/sites")
    identity = properties(properties(site.value)["identity"])
    ids = text(identity["userAssignedIdentities"])
    id_param = re.search(r"'\$\{(\w+)\}'", ids)
    assert id_param
    id_file, id_node = trace(site_file, identifier_use(site_file, id_param.group(1)))
    assert (id_file.rel, text(id_node)) == (
        "infra/core/identity/user-assigned-identity.bicep",
        "identity.id",
    )


def test_bookingbridge_settings_have_the_documented_values() -> None:
    settings = app_settings()
    # Key Vault URL: the vault's own URI output.
    vault_file, vault_uri = trace(*settings["BB_KEY_VAULT_URL"])
    assert (vault_file.rel, text(vault_uri)) == (
        "infra/core/security/key-vault.bicep",
        "vault.properties.vaultUri",
    )
    # Defaults (public cloud endpoints, secret name, timer schedule) are the ones shared/core/settings.py
    # applies, both in the Bicep and in the azd parameter mapping ${NAME=default}.
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    compared = set()
    for name in settings_read_by_code():
        default = code_default(name)
        if default is None or name not in settings:
            continue
        value = string_value(trace(*settings[name])[1])
        if value is not None:  # a plain string, not an expression computed at deployment
            assert value == default, (name, value, default)
            compared.add(name)
        for param in parameters.values():
            mapped = re.fullmatch(rf"\$\{{{name}=(.*)\}}", param["value"])
            if mapped:
                assert mapped.group(1) == default, name
    assert {"BB_AUTHORITY_HOST", "BB_GRAPH_BASE_URL", *TIMER_SCHEDULES} <= compared, compared
    # Client id, audience, tenant: parameters of main.bicep, fed from the azd environment variable
    # of the same name, passed through unchanged to the app module.
    main = bicep(INFRA / "main.bicep")
    api_args = properties(properties(main.get("module", "api").value)["params"])
    for name, param in (
        ("BB_CLIENT_ID", "clientId"),
        ("BB_API_AUDIENCE", "apiAudience"),
        ("BB_API_TENANT_ID", "apiTenantId"),
    ):
        _, node = settings[name]
        assert re.search(rf"\b{param}\b", text(node)), (name, text(node))
        assert main.get("param", param) and text(api_args[param]) == param, name
        assert parameters[param]["value"] == f"${{{name}}}", name
    # Public base URL: the app's default host name (Flex can assign a unique one) + /api.
    _, base = settings["BB_PUBLIC_BASE_URL"]
    assert re.fullmatch(r"'https://\$\{\w+\.outputs\.defaultHostName\}/api'", text(base)), text(
        base
    )


# --- roles ------------------------------------------------------------------------------------------


def role_map() -> tuple[BicepFile, dict[str, str]]:
    maps = []
    for path in bicep_files():
        file = bicep(path)
        for var in file.all("var"):
            if var.value is not None and var.value.type == "object":
                values = {k: string_value(v) for k, v in properties(var.value).items()}
                if set(values.values()) & set(BUILT_IN_ROLE_IDS.values()):
                    maps.append((file, var.name, values))
    assert len(maps) == 1, (
        f"role ids must live in one named map, found {[(f.rel, n) for f, n, _ in maps]}"
    )
    file, name, values = maps[0]
    assert name == "roleDefinitionIds"
    return file, {k: v for k, v in values.items() if v}


def test_role_ids_live_only_in_the_one_map() -> None:
    file, roles = role_map()
    for key, role_id in roles.items():
        assert BUILT_IN_ROLE_IDS.get(key) == role_id, f"{key}: {role_id} is not that built-in role"
    for path in bicep_files():
        source = path.read_text()
        for role_id in BUILT_IN_ROLE_IDS.values():
            count = source.count(role_id)
            assert count == (1 if path == file.path and role_id in roles.values() else 0), (
                path,
                role_id,
            )


def test_each_role_the_clients_need_is_assigned_to_the_apps_identity() -> None:
    imported = modules_imported_by_clients()
    needed = {role for module, role in CLIENT_MODULE_ROLES.items() if module in imported}
    assert {"storageTableDataContributor", "storageQueueDataContributor"} <= needed, imported
    needed |= PLATFORM_ROLES
    file, roles = role_map()
    assigned: dict[str, str] = {}
    for res in file.resources("Microsoft.Authorization/roleAssignments"):
        props = properties(res.value)
        inner = properties(props["properties"])
        role = re.search(r"roleDefinitionIds\.(\w+)", text(inner["roleDefinitionId"]))
        assert role, text(inner["roleDefinitionId"])
        principal_file, principal = trace(file, inner["principalId"])
        if text(principal) != "identity.properties.principalId":
            continue  # e.g. the deployer's assignment
        assert principal_file.rel == "infra/core/identity/user-assigned-identity.bicep"
        assert literal(inner["principalType"]) == "ServicePrincipal", res.name
        scope = file.get("resource", text(props["scope"]))
        assert scope and scope.type_string, res.name
        assigned[role.group(1)] = scope.type_string.split("@")[0]
    for role in needed:
        assert role in roles, f"{role} missing from the role map"
        assert assigned.get(role) == ROLE_SCOPE_TYPES[role], f"{role} not assigned at its scope"


# --- secrets and hardening --------------------------------------------------------------------------

SECRET_NAME = re.compile(r"secret|password|passwd|key|connectionstring|token|credential", re.I)
SECRET_EXPRESSION = re.compile(
    r"listKeys|listSecrets|listCredentials|listAccountSas|listServiceSas|\.ConnectionString|"
    r"primaryKey|secondaryKey|AccountKey|SharedAccessKey|InstrumentationKey",
    re.I,
)


def looks_secret(name: str) -> bool:
    """A name that suggests a secret value. Key Vault is not a key; `...Name` holds a name."""
    if re.search(r"(_NAME|Name)s?$", name):
        return False
    return bool(SECRET_NAME.search(re.sub(r"key_?vault", "", name, flags=re.I)))


def test_secret_detection_works() -> None:
    assert looks_secret("clientSecret") and looks_secret("storageAccountKey")
    assert looks_secret("APPLICATIONINSIGHTS_CONNECTION_STRING".replace("_", ""))
    assert not looks_secret("AZURE_KEY_VAULT_NAME") and not looks_secret("keyVaultUri")
    assert not looks_secret("clientSecretName") and looks_secret("clientSecretValue")
    assert SECRET_EXPRESSION.search("storage.listKeys().keys[0].value")


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_secret_in_outputs_or_parameter_defaults(path: Path) -> None:
    file = bicep(path)
    for output in file.all("output"):
        assert not looks_secret(output.name), f"{file.rel}: output {output.name}"
        assert output.value is not None
        assert not SECRET_EXPRESSION.search(text(output.value)), f"{file.rel}: {output.name}"
    for param in file.all("param"):
        if "secure" in param.decorators:
            assert param.value is None, f"{file.rel}: @secure() param {param.name} has a default"
        elif looks_secret(param.name):
            pytest.fail(f"{file.rel}: param {param.name} looks secret but is not @secure()")
    # A key leaves a resource only straight into a Key Vault secret (Graph reads its Event Hubs
    # connection string there, issue 17): as the secret's value, nowhere else.
    into_vault = [
        properties(properties(secret.value)["properties"]).get("value")
        for secret in file.resources("Microsoft.KeyVault/vaults/secrets")
        if not secret.existing
    ]
    allowed = sum(1 for v in into_vault if v is not None and "listKeys(" in text(v))
    assert file.source.decode().count("listKeys(") == allowed, file.rel


def test_no_secret_in_app_settings() -> None:
    for name, (_, node) in app_settings().items():
        value = text(node)
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            # Instrumentation key + endpoints: an identifier, not a credential, and local auth is
            # disabled (checked below), so ingestion needs the identity's Entra token.
            assert value == "applicationInsights.properties.ConnectionString", value
            continue
        # Names are pinned by the settings test; values must not pull a key or a secret in.
        assert not SECRET_EXPRESSION.search(value), f"{name} = {value}"
        assert "@Microsoft.KeyVault(" not in value, f"{name}: the app reads Key Vault itself"
    _, insights = the_resource("Microsoft.Insights/components")
    assert literal(properties(properties(insights.value)["properties"])["DisableLocalAuth"]) is True


def test_storage_is_hardened() -> None:
    _, storage = the_resource("Microsoft.Storage/storageAccounts")
    props = properties(properties(storage.value)["properties"])
    assert literal(props["allowSharedKeyAccess"]) is False
    assert literal(props["minimumTlsVersion"]) == "TLS1_2"
    assert literal(props["allowBlobPublicAccess"]) is False
    assert literal(props["supportsHttpsTrafficOnly"]) is True


def test_key_vault_is_hardened() -> None:
    file, vault = the_resource("Microsoft.KeyVault/vaults")
    props = properties(properties(vault.value)["properties"])
    assert literal(props["enableRbacAuthorization"]) is True
    assert literal(props["enableSoftDelete"]) is True
    assert literal(props["enablePurgeProtection"]) is True
    retention = traced_literal(file, props["softDeleteRetentionInDays"])
    assert isinstance(retention, int) and 7 <= retention <= 90


# --- app registration -------------------------------------------------------------------------------


def graph_permissions() -> dict:
    return json.loads((INFRA / "graph-permissions.json").read_text())


def test_graph_permissions_file_matches_the_code_and_graphs_ids() -> None:
    data = graph_permissions()
    assert data["resourceAppId"] == GRAPH
    delegated = {p["value"]: p["id"] for p in data["delegated"]}
    application = {p["value"]: p["id"] for p in data["application"]}
    code_delegated, code_application = code_graph_permissions()
    assert set(delegated) == code_delegated | REGISTERED_ONLY_SCOPES
    assert set(application) == code_application
    for value, perm_id in delegated.items():
        assert KNOWN_GRAPH_IDS[(value, "Scope")] == perm_id, value
    for value, perm_id in application.items():
        assert KNOWN_GRAPH_IDS[(value, "Role")] == perm_id, value


def run_register_app(
    *args: str, bin_dir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the script with stub az/azd first on PATH: nothing here reaches a real tenant."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZD_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["FAKE_AZ_LOG"] = str(bin_dir / "calls.log")
    env.update(extra_env or {})
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(REGISTER_APP), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
        check=False,
    )


def commands(output: str, *prefix: str) -> list[list[str]]:
    """The '+ az ...' lines of the script's output, split like a shell would."""
    found = []
    for line in output.splitlines():
        if line.startswith("+ "):
            argv = shlex.split(line[2:])
            if argv[: len(prefix)] == list(prefix):
                found.append(argv)
    return found


def option_values(argv: list[str], option: str) -> list[str]:
    i = argv.index(option)
    values = []
    for arg in argv[i + 1 :]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


HOST = "func-api-test.azurewebsites.net"


# Stands in for `az` and `azd`: logs each call (and the file handed to `keyvault secret set`),
# answers the few queries register-app.sh makes, and returns FAKE_SECRET as the new client secret.
FAKE_AZ = """\
#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
entry = {"argv": args}
if args[:4] == ["keyvault", "secret", "set", "--vault-name"]:
    entry["file"] = open(args[args.index("--file") + 1]).read()
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
if args[:3] == ["ad", "app", "create"]:
    print("11111111-2222-3333-4444-555555555555")
elif args[:4] == ["ad", "app", "credential", "reset"]:
    print(os.environ["FAKE_SECRET"])
elif args[:3] == ["keyvault", "secret", "set"] and "--output" not in args:
    print(json.dumps({"value": os.environ["FAKE_SECRET"]}))  # what the real `az` would echo
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A directory with stub `az` and `azd` that log their arguments (see FAKE_AZ)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "azd"):
        (bin_dir / tool).write_text(FAKE_AZ)
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def test_register_app_dry_run_prints_the_registration(fake_bin: Path) -> None:
    result = run_register_app("--dry-run", "--host", HOST, "--vault", "kv-test", bin_dir=fake_bin)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    payload = re.search(r"^# required-resource-accesses\.json: (.*)$", out, re.M)
    assert payload, out
    (required,) = json.loads(payload.group(1))
    assert required["resourceAppId"] == GRAPH
    printed = {(a["id"], a["type"]) for a in required["resourceAccess"]}
    data = graph_permissions()
    expected = {(p["id"], "Scope") for p in data["delegated"]}
    expected |= {(p["id"], "Role") for p in data["application"]}
    assert printed == expected
    by_id = {perm_id: kind for (_, kind), perm_id in KNOWN_GRAPH_IDS.items()}
    assert all(by_id[perm_id] == kind for perm_id, kind in printed)
    names = {
        name for (name, kind), perm_id in KNOWN_GRAPH_IDS.items() if (perm_id, kind) in printed
    }
    assert names >= code_graph_permissions()[0]

    roles = re.search(r"^# app-roles\.json: (.*)$", out, re.M)
    assert roles
    members = {r["value"]: r["allowedMemberTypes"] for r in json.loads(roles.group(1))}
    assert members == {"Portal.Service": ["Application"], "Building.Admin": ["User"]}

    (create,) = commands(out, "az", "ad", "app", "create")
    assert option_values(create, "--sign-in-audience") == ["AzureADMultipleOrgs"]
    paths = oauth_redirect_paths()
    assert (
        sorted(json.loads((INFRA / "app-registration.json").read_text())["redirectPaths"]) == paths
    )
    redirects = sorted(f"https://{HOST}/api{path}" for path in paths)
    assert sorted(option_values(create, "--web-redirect-uris")) == redirects
    (update,) = commands(out, "az", "ad", "app", "update")
    assert sorted(option_values(update, "--web-redirect-uris")) == redirects
    assert option_values(update, "--identifier-uris") == ["api://<appId>"]
    # The admin console (issue 13): its SPA redirect URI and the delegated scope it asks for.
    platform = re.search(r"^# spa-and-scopes\.json: (.*)$", out, re.M)
    assert platform, out
    body = json.loads(platform.group(1))
    assert body["spa"]["redirectUris"] == [f"https://{HOST}/api/console/"]
    assert body["api"]["requestedAccessTokenVersion"] == 2
    (scope,) = body["api"]["oauth2PermissionScopes"]
    registration = json.loads((INFRA / "app-registration.json").read_text())
    assert scope == registration["oauth2PermissionScopes"][0]
    assert scope["value"] == ACCESS_AS_USER and scope["type"] == "User" and scope["isEnabled"]
    assert all(scope[k] for k in ("id", "adminConsentDisplayName", "userConsentDisplayName"))
    (patch,) = commands(out, "az", "rest")
    assert option_values(patch, "--method") == ["PATCH"]
    assert option_values(patch, "--uri") == [
        "https://graph.microsoft.com/v1.0/applications(appId='<appId>')"
    ]
    assert option_values(patch, "--body")[0].endswith("/spa-and-scopes.json")
    assert f"https://{HOST}/api/console/" in out and "api://<appId>/access_as_user" in out
    # The console's page is the SPA redirect URI the app itself names (config.json).
    assert registration["spaRedirectPaths"] == ["/console/"]
    (secret_set,) = commands(out, "az", "keyvault", "secret", "set")
    assert "--value" not in secret_set and "--file" in secret_set
    # The name the app reads by default (azd env BB_CLIENT_SECRET_NAME is empty here).
    assert option_values(secret_set, "--name") == [code_default("BB_CLIENT_SECRET_NAME")]
    assert option_values(secret_set, "--output") == ["none"]  # set echoes the value otherwise
    assert commands(out, "az", "ad", "app", "credential", "reset")
    assert "***" in out
    assert f"https://{HOST}/api/oauth/adminconsent".replace("/", "%2F").replace(":", "%3A") in out
    # A dry run calls nothing but `azd env get-value` (for defaults it was not given).
    log = fake_bin / "calls.log"
    calls = (
        [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []
    )
    assert all(argv[:2] == ["env", "get-value"] for argv in calls), calls


def test_register_app_puts_the_secret_in_key_vault_and_nowhere_else(fake_bin: Path) -> None:
    secret = "fAkE~s3cr3t.Value_0123456789abcdefghijkl"
    result = run_register_app(
        "--host", HOST, "--vault", "kv-test", bin_dir=fake_bin, extra_env={"FAKE_SECRET": secret}
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert secret not in result.stdout and secret not in result.stderr
    calls = [json.loads(line) for line in (fake_bin / "calls.log").read_text().splitlines()]
    for call in calls:
        assert secret not in " ".join(call["argv"]), call["argv"]
    stored = [c for c in calls if c["argv"][:3] == ["keyvault", "secret", "set"]]
    assert len(stored) == 1 and stored[0]["file"] == secret
    assert code_default("BB_CLIENT_SECRET_NAME") in stored[0]["argv"]
    assert any(c["argv"][:3] == ["env", "set", "BB_CLIENT_ID"] for c in calls)  # azd
    assert "11111111-2222-3333-4444-555555555555" in result.stdout


def test_scope_rooms_script_scopes_the_apps_application_permissions() -> None:
    script = SCOPE_ROOMS.read_text()
    for needle in (
        "New-ServicePrincipal -AppId $AppId -ObjectId $ServicePrincipalObjectId -DisplayName",
        "New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $filter",
        "MemberOfGroup -eq",
        "New-ManagementRoleAssignment -App $AppId -Role $role -CustomResourceScope $ScopeName",
        "Test-ServicePrincipalAuthorization -Identity $AppId -Resource",
        "[switch] $Test",
    ):
        assert needle in script, needle
    assert re.search(r"GRANTS ARE ADDITIVE", script)
    roles = re.search(r"\[string\[\]\] \$Roles = @\(([^)]*)\)", script)
    assert roles
    scoped = set(re.findall(r"'Application ([\w.]+)'", roles.group(1)))
    mailbox_permissions = {
        p["value"]
        for p in graph_permissions()["application"]
        if p["value"].startswith("Calendars.")
    }
    assert scoped == mailbox_permissions


# --- Event Hubs delivery (issue 17) -----------------------------------------------------------------

EVENT_HUBS = INFRA / "core" / "messaging" / "event-hubs.bicep"
RBAC = INFRA / "app" / "rbac.bicep"


def test_event_hubs_are_optional_and_off_by_default() -> None:
    from shared.core.settings import NOTIFICATION_DELIVERIES

    main = bicep(INFRA / "main.bicep")
    param = main.get("param", "notificationDelivery")
    assert param is not None and param.value is not None
    assert literal(param.value) == "webhook"
    decorated = re.search(
        r"@allowed\(\[([^\]]*)\]\)\s*param notificationDelivery\b", main.source.decode()
    )
    assert decorated, "notificationDelivery has no @allowed list"
    allowed = re.findall(r"'(\w+)'", decorated.group(1))
    assert tuple(allowed) == NOTIFICATION_DELIVERIES, allowed
    module = main.get("module", "eventHubs")
    assert module is not None and module_target(main, module).path == EVENT_HUBS
    condition = next(c for c in module.node.named_children if c.type == "if_statement")
    assert "eventHubsEnabled" in text(condition)
    enabled = main.get("var", "eventHubsEnabled")
    assert enabled and text(enabled.value) == "notificationDelivery == 'eventhub'"
    # Off, the trigger is disabled: no listener without a hub.
    settings = app_settings()
    _, disabled = settings["AzureWebJobs.graph_eventhub_notifications.Disabled"]
    assert text(disabled) == "notificationDelivery == 'eventhub' ? 'false' : 'true'"
    assert literal(settings["BB_NOTIFICATION_DELIVERY"][1]) == "notificationDelivery"


def test_the_hub_and_consumer_group_are_the_triggers() -> None:
    trigger = importlib.import_module("functions.graph_eventhub")
    hubs = bicep(EVENT_HUBS)
    assert traced_literal(hubs, identifier_use(hubs, "hubName")) == trigger.EVENT_HUB
    assert traced_literal(hubs, identifier_use(hubs, "consumerGroupName")) == (
        trigger.CONSUMER_GROUP
    )
    rbac = bicep(RBAC)
    hub = rbac.get("resource", "eventHub")
    assert hub and literal(properties(hub.value)["name"]) == trigger.EVENT_HUB
    app = importlib.import_module("function_app").app
    app.functions_bindings = None  # get_functions() refuses a second call otherwise
    hub_functions = [
        f.get_function_name()
        for f in app.get_functions()
        if f.get_trigger().get_binding_name() == "eventHubTrigger"
    ]
    assert hub_functions == ["graph_eventhub_notifications"], hub_functions
    assert f"AzureWebJobs.{hub_functions[0]}.Disabled" in app_settings()
    # The trigger's identity-based connection, with the app's identity.
    settings = app_settings()
    assert trigger.CONNECTION == "BB_EVENTHUB"
    assert literal(settings["BB_EVENTHUB__credential"][1]) == "managedidentity"
    file, node = trace(*settings["BB_EVENTHUB__clientId"])
    assert (file.rel, text(node)) == (
        "infra/core/identity/user-assigned-identity.bicep",
        "identity.properties.clientId",
    )
    file, node = trace(*settings["BB_EVENTHUB__fullyQualifiedNamespace"])
    assert "eventHubs.outputs.fullyQualifiedNamespace" in text(node), text(node)


def test_graph_gets_a_send_only_connection_string_in_the_vault_and_nothing_else() -> None:
    hubs = bicep(EVENT_HUBS)
    (namespace,) = hubs.resources("Microsoft.EventHub/namespaces")
    props = properties(properties(namespace.value)["properties"])
    assert literal(props["minimumTlsVersion"]) == "1.2"
    assert literal(properties(properties(namespace.value)["sku"])["name"]) == "Standard"
    (rule,) = hubs.resources("Microsoft.EventHub/namespaces/eventhubs/authorizationRules")
    rights = properties(properties(rule.value)["properties"])["rights"]
    assert [literal(r) for r in rights.named_children] == ["Send"]
    (secret,) = [s for s in hubs.resources("Microsoft.KeyVault/vaults/secrets") if not s.existing]
    value = properties(properties(secret.value)["properties"])["value"]
    assert text(value) == f"{rule.name}.listKeys().primaryConnectionString"
    # The secret's name is the one BB_EVENTHUB_SECRET_URL names, under the app's own vault URI.
    main = bicep(INFRA / "main.bicep")
    args = properties(properties(main.get("module", "eventHubs").value)["params"])
    assert text(args["secretName"]) == "eventHubSecretName"
    assert text(args["keyVaultName"]) == "keyVault.outputs.name"
    _, url = app_settings()["BB_EVENTHUB_SECRET_URL"]
    assert "'${keyVaultUri}secrets/${eventHubSecretName}'" in text(url), text(url)
    api_args = properties(properties(main.get("module", "api").value)["params"])
    assert text(api_args["eventHubSecretName"]) == "eventHubSecretName"
    _, tenant_id = app_settings()["BB_EVENTHUB_TENANT"]
    assert "tenant().tenantId" in text(tenant_id)


def test_graphs_change_tracking_principal_gets_the_secret_and_the_hub_only() -> None:
    file, _ = role_map()
    assert file.path == RBAC
    grants: dict[str, tuple[str, str]] = {}
    for res in file.resources("Microsoft.Authorization/roleAssignments"):
        inner = properties(properties(res.value)["properties"])
        role = re.search(r"roleDefinitionIds\.(\w+)", text(inner["roleDefinitionId"]))
        assert role
        _, principal = trace(file, inner["principalId"])
        scope = file.get("resource", text(properties(res.value)["scope"]))
        assert scope and scope.type_string
        if text(inner["principalId"]) == "graphChangeTrackingPrincipalId":
            grants[role.group(1)] = (scope.type_string.split("@")[0], text(principal))
    assert grants == {
        "keyVaultSecretsUser": ("Microsoft.KeyVault/vaults/secrets", "''"),
        "eventHubsDataSender": ("Microsoft.EventHub/namespaces/eventhubs", "''"),
    }, grants
    # Its object id comes from the azd environment; the app id is Graph's documented one.
    main = bicep(INFRA / "main.bicep")
    args = properties(properties(main.get("module", "rbac").value)["params"])
    assert text(args["graphChangeTrackingPrincipalId"]) == "graphChangeTrackingPrincipalId"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["graphChangeTrackingPrincipalId"]["value"] == (
        "${GRAPH_CHANGE_TRACKING_PRINCIPAL_ID}"
    )
    described = re.search(
        r"@description\('([^\n]*)'\)\s*param graphChangeTrackingPrincipalId\b",
        main.source.decode(),
    )
    assert described and "0bf30f3b-4a52-48df-9a82-234910c4a086" in described.group(1)
