"""Index a `func.FunctionApp` the way the Python worker does, into plain specs the host runs.

Only the library's own introspection is used (`get_functions()`, `get_trigger()`,
`get_bindings()`, `get_user_function()`), so what runs here is exactly what the decorators
registered. Indexing is strict where the worker is strict: every parameter of the Python function
must be a binding name (or `context`) and every binding except `$return` must be a parameter, and
`%SETTING%` expressions must resolve. Trigger and binding types this host cannot run are refused at
start-up with the function's name, rather than silently never firing; Event Hubs triggers are the
one exception: indexed and invocable through the admin API, never listened to (no Event Hubs here).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import BindingDirection

from devstack.host.config import HostConfigError, resolve_setting_expressions
from devstack.host.routes import RouteTemplate, RouteTemplateError
from devstack.host.schedules import Schedule, ScheduleError, parse_schedule

DEFAULT_CONNECTION = "AzureWebJobsStorage"
RETURN = "$return"


@dataclass(frozen=True)
class HttpTriggerSpec:
    route: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"


@dataclass(frozen=True)
class TimerTriggerSpec:
    schedule: Schedule
    run_on_startup: bool
    use_monitor: bool


@dataclass(frozen=True)
class QueueTriggerSpec:
    queue_name: str
    connection: str  # the app setting name, not the connection string


@dataclass(frozen=True)
class EventHubTriggerSpec:
    """Indexed and described, never listened to: no Event Hubs runs here. The admin API
    (`POST /admin/functions/<name>`) invokes it with one event carrying the given input."""

    event_hub_name: str
    connection: str  # the app setting (prefix) name; not resolved: nothing connects
    consumer_group: str
    many: bool  # cardinality many: the function takes a list of events


@dataclass(frozen=True)
class OutputSpec:
    name: str  # a parameter name, or "$return"
    type: str  # "http" | "queue"
    queue_name: str | None = None
    connection: str | None = None


TriggerSpec = HttpTriggerSpec | TimerTriggerSpec | QueueTriggerSpec | EventHubTriggerSpec


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    user_function: Callable[..., Any]
    is_async: bool
    trigger_param: str
    trigger: TriggerSpec
    outputs: tuple[OutputSpec, ...]
    wants_context: bool

    @property
    def trigger_type(self) -> str:
        if isinstance(self.trigger, HttpTriggerSpec):
            return "http"
        if isinstance(self.trigger, TimerTriggerSpec):
            return "timer"
        if isinstance(self.trigger, EventHubTriggerSpec):
            return "eventHub"
        return "queue"

    def output(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


def load_app(reference: str, app_dir: Path) -> func.FunctionApp:
    """Import `module:attribute` with `app_dir` first on sys.path (the worker does the same)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise HostConfigError(f"--app must look like module:attribute, got {reference!r}")
    directory = str(app_dir.resolve())
    if directory not in sys.path:
        # First, so that the app's function_app.py wins over any other on the path.
        sys.path.insert(0, directory)
    module = importlib.import_module(module_name)
    app = getattr(module, attribute, None)
    if not isinstance(app, func.FunctionApp):
        raise HostConfigError(f"{reference} is not an azure.functions.FunctionApp")
    return app


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _trigger_type(binding: Any) -> str:
    return str(binding.type)


def _connection(value: Any) -> str:
    return str(value) if value else DEFAULT_CONNECTION


def _index_one(fn: Any, environ: Mapping[str, str]) -> FunctionSpec:
    name = str(fn.get_function_name())
    trigger = fn.get_trigger()
    user_function = fn.get_user_function()
    where = f"function {name}"
    kind = _trigger_type(trigger)
    spec_trigger: TriggerSpec
    try:
        if kind == "httpTrigger":
            methods = trigger.methods
            spec_trigger = HttpTriggerSpec(
                route=RouteTemplate.parse(
                    str(trigger.route if trigger.route is not None else name)
                ),
                methods=frozenset(_enum_value(m).upper() for m in methods) if methods else None,
                auth_level=_enum_value(trigger.auth_level or "function").lower(),
            )
        elif kind == "timerTrigger":
            expression = resolve_setting_expressions(
                str(trigger.schedule), f"{where} schedule", environ
            )
            spec_trigger = TimerTriggerSpec(
                schedule=parse_schedule(expression),
                run_on_startup=bool(trigger.run_on_startup),
                use_monitor=bool(trigger.use_monitor),
            )
        elif kind == "queueTrigger":
            spec_trigger = QueueTriggerSpec(
                queue_name=resolve_setting_expressions(
                    str(trigger.queue_name), f"{where} queue name", environ
                ),
                connection=_connection(trigger.connection),
            )
        elif kind == "eventHubTrigger":
            spec_trigger = EventHubTriggerSpec(
                event_hub_name=resolve_setting_expressions(
                    str(trigger.event_hub_name), f"{where} event hub name", environ
                ),
                connection=str(trigger.connection),
                consumer_group=str(trigger.consumer_group or "$Default"),
                many=_enum_value(trigger.cardinality or "one").lower() == "many",
            )
        else:
            raise HostConfigError(f"{where}: trigger type {kind} is not supported by this host")
    except (RouteTemplateError, ScheduleError) as exc:
        raise HostConfigError(f"{where}: {exc}") from exc

    outputs: list[OutputSpec] = []
    for binding in fn.get_bindings():
        if binding is trigger:
            continue
        btype = str(binding.type)
        if binding.direction != BindingDirection.OUT.value:
            raise HostConfigError(
                f"{where}: input binding {btype} ({binding.name}) is not supported"
            )
        if btype == "http":
            outputs.append(OutputSpec(binding.name, "http"))
        elif btype == "queue":
            queue_name = resolve_setting_expressions(
                str(binding.queue_name), f"{where} output queue name", environ
            )
            outputs.append(
                OutputSpec(binding.name, "queue", queue_name, _connection(binding.connection))
            )
        else:
            raise HostConfigError(f"{where}: output binding {btype} is not supported by this host")

    # The worker refuses functions whose parameters and bindings disagree; so do we, at start-up.
    params = set(inspect.signature(user_function).parameters)
    bindings = {trigger.name} | {o.name for o in outputs if o.name != RETURN}
    wants_context = "context" in params and "context" not in bindings
    extra = params - bindings - ({"context"} if wants_context else set())
    missing = bindings - params
    if extra:
        raise HostConfigError(f"{where}: parameters {sorted(extra)} are not bindings")
    if missing:
        raise HostConfigError(f"{where}: bindings {sorted(missing)} are not parameters")

    return FunctionSpec(
        name=name,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger_param=str(trigger.name),
        trigger=spec_trigger,
        outputs=tuple(outputs),
        wants_context=wants_context,
    )


def disabled(name: str, environ: Mapping[str, str]) -> bool:
    """Whether app setting `AzureWebJobs.<name>.Disabled` turns the function off, as in Azure
    ("true" in any case, or "1"): a disabled function is not indexed, so nothing triggers it and
    its HTTP route answers 404."""
    value = environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower()
    return value in ("true", "1")


def index_functions(app: func.FunctionApp, environ: Mapping[str, str]) -> list[FunctionSpec]:
    """All functions of the app as specs; raises HostConfigError naming every problem at once."""
    # get_functions() refuses a second call in one process (it remembers names it has seen);
    # forgetting them makes indexing repeatable, e.g. for an in-process host after an index test.
    app.functions_bindings = None
    specs: list[FunctionSpec] = []
    problems: list[str] = []
    for fn in app.get_functions():
        if disabled(str(fn.get_function_name()), environ):
            continue
        try:
            specs.append(_index_one(fn, environ))
        except HostConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise HostConfigError("cannot index the app:\n  " + "\n  ".join(problems))
    return specs
