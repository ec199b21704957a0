"""The runs' console logger: Dagster's own, except that a step failing with a `dg.Failure` (an error the user
fixes, told in words: a missing table, an attribute key, failed users) prints its description without the
stack. The stack stays in the event log, under the failed step in the UI."""

import logging

import dagster as dg


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
# logger, and print the stack.
CONSOLE_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
