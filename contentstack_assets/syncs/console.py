"""The runs' console: Dagster's own logger, except that a step failing with a `dg.Failure` (an error the user
fixes, told in words: a missing table, an attribute key, failed users) prints its description without the
stack. The stack stays in the event log, under the failed step in the UI.

Two ways in, because Dagster uses a code location's loggers only in runs whose config names them:
- `FailureStackCutter`, a handler named in the instance file (`python_logs.dagster_handler_config`, as the
  shipped `dagster.yaml` files do): every run of the instance, whatever its job and config, including the
  implicit asset job of "Materialize" and asset backfills;
- `console_logger` with `CONSOLE_RUN_CONFIG`, in the config of the `N_sync` jobs and of the schedules' and
  sensors' range requests: for an instance file without the handler.
"""

import logging
import os
import warnings

import dagster as dg

# The instance file's handler config is a Beta feature of Dagster 1.13, said by every process that opens a
# run's log manager: here, once this module is loaded; in the processes started from this one (the run
# workers a code server starts, their step processes), before they load the code, so through
# PYTHONWARNINGS, which they read as they start. One exact message; nothing else is silenced.
YAML_HANDLERS_WARNING = "Handling yaml-defined logging configuration is currently in beta"
warnings.filterwarnings("ignore", message=YAML_HANDLERS_WARNING, category=dg.BetaWarning)
_IGNORE = f"ignore:{YAML_HANDLERS_WARNING}:Warning"
if _IGNORE not in os.environ.get("PYTHONWARNINGS", ""):
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _IGNORE]))


class FailureWithoutStack(logging.Filter):
    """Cut the error of a step (or run) failure raised as a `dg.Failure` down to its description."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "dagster_event", None)
        if event is not None and event.event_type == dg.DagsterEventType.RUN_FAILURE:
            # an in-process run's failure repeats its first failed step's error
            event = event.event_specific_data.first_step_failure_event
        if event is None or event.event_type != dg.DagsterEventType.STEP_FAILURE:
            return True
        user_failure = event.step_failure_data.user_failure_data
        if user_failure is None or not user_failure.description:
            return True  # an unexpected exception: its stack is what tells where it came from
        # the message is Dagster's line, then "\n\n" and the error with its stack
        line = str(record.msg).split("\n\n", 1)[0]
        record.msg = f"{line}\n\n{user_failure.description}"
        record.args = ()
        return True


class FailureStackCutter(logging.Handler):
    """An instance file's handler that prints nothing: Dagster hands each record of a run to the instance's
    handlers (the event log's first, which stores the message whole) before its loggers, with the same record,
    so cutting the stack of a `dg.Failure` here is what the console logger prints next.

    In `$DAGSTER_HOME/dagster.yaml`:

        python_logs:
          dagster_handler_config:
            handlers:
              failure_stack_cutter: {class: contentstack_assets.syncs.console.FailureStackCutter}
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.addFilter(FailureWithoutStack())

    def emit(self, record: logging.LogRecord) -> None:
        """Nothing: the filter did the work."""


@dg.logger(
    config_schema=dg.colored_console_logger.config_schema,
    description="Dagster's colored console logger; a dg.Failure prints its description without the stack",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = dg.colored_console_logger.logger_fn(init_context)
    logger.addFilter(FailureWithoutStack())
    return logger


# Dagster uses a code location's loggers only in runs whose config names them (else its own console
# logger): each N_sync job names this one in its default config, which reaches unpartitioned runs and runs of
# one partition; the schedules' and sensors' range requests name it themselves (syncs/partitions.py). A range
# launched from the Launchpad and runs of the implicit asset job (backfills, "Materialize") keep Dagster's
# logger: there the instance file's FailureStackCutter cuts the stack (without it, they print it).
CONSOLE_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
