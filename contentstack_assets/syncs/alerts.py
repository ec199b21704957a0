"""Alerts to a Slack-compatible webhook ($CONTENTSTACK_ALERT_WEBHOOK_URL): `contentstack_failure_alerts` when
a sync run fails, `contentstack_check_alerts` when a run succeeded but a check of a sync warned beyond the
spec's tolerance (rejected rows above `max_rejected_share`, failed users above `max_failed_share`); a dry
run, which sends nothing, posts no check alert. Both are on by default when the webhook is set as the code
location loads.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import os
from urllib.parse import urlsplit

import dagster as dg
import requests

from contentstack_assets.syncs.runs import is_dry_run, syncs_of_run

ALERT_WEBHOOK_ENV = "CONTENTSTACK_ALERT_WEBHOOK_URL"
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"
# how a check's count reads in an alert ("2 rows rejected"); other checks count "failures"
COUNT_WORDS = {"rows_valid": "rows rejected", "delivery_failures": "failed"}


def alert_sensors() -> list[dg.SensorDefinition]:
    """Both alert sensors, on by default when the webhook is set now (as the code location loads)."""
    return [failure_alerts_sensor(), check_alerts_sensor()]


def _default_status() -> tuple[dg.DefaultSensorStatus, str]:
    """The status a sensor starts in (until toggled in the UI), and why, for its description."""
    if os.environ.get(ALERT_WEBHOOK_ENV):
        return dg.DefaultSensorStatus.RUNNING, ""
    return dg.DefaultSensorStatus.STOPPED, (
        f" (stopped by default: ${ALERT_WEBHOOK_ENV} was not set when the code location loaded)"
    )


def failure_alerts_sensor() -> dg.SensorDefinition:
    """`contentstack_failure_alerts`: a failed sync run, its first failed step's error and its failed checks."""
    status, why = _default_status()

    @dg.run_failure_sensor(
        name="contentstack_failure_alerts",
        monitor_all_code_locations=False,
        description=f"Posts a Slack-compatible message to ${ALERT_WEBHOOK_ENV} when a sync run fails{why}",
        default_status=status,
    )
    def failure_alerts(context: dg.RunFailureSensorContext):
        webhook = os.environ.get(ALERT_WEBHOOK_ENV)
        if not webhook:
            return dg.SkipReason(f"{ALERT_WEBHOOK_ENV} is not set")
        run = context.dagster_run
        names = syncs_of_run(run)
        if not names:
            return dg.SkipReason(f"run {run.run_id} of {run.job_name} is not a sync run")
        message = alert_message(
            ", ".join(sorted(names)),
            run.run_id,
            failure_summary(context),
            failed_checks(context.instance, run, names),
        )
        post_alert(webhook, message)
        context.log.info(f"alert for run {run.run_id} posted to {urlsplit(webhook).hostname}")
        return None

    return failure_alerts


def check_alerts_sensor() -> dg.SensorDefinition:
    """`contentstack_check_alerts`: a successful sync run whose checks warned beyond the spec's tolerance (a
    failed run is the failure alert's, which lists its checks too)."""
    status, why = _default_status()

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="contentstack_check_alerts",
        monitor_all_code_locations=False,
        description=(
            f"Posts a Slack-compatible message to ${ALERT_WEBHOOK_ENV} when a sync run succeeds with a check "
            f"beyond the spec's tolerance: rejected rows above max_rejected_share, failures above "
            f"max_failed_share{why}"
        ),
        default_status=status,
    )
    def check_alerts(context: dg.RunStatusSensorContext):
        webhook = os.environ.get(ALERT_WEBHOOK_ENV)
        if not webhook:
            return dg.SkipReason(f"{ALERT_WEBHOOK_ENV} is not set")
        run = context.dagster_run
        names = syncs_of_run(run)
        if not names:
            return dg.SkipReason(f"run {run.run_id} of {run.job_name} is not a sync run")
        if planned_only(run):
            return dg.SkipReason(
                f"run {run.run_id} is a dry run: it sent nothing, so its checks alert no one"
            )
        checks = failed_checks(context.instance, run, names)
        if not checks:
            return dg.SkipReason(f"run {run.run_id}: every check passed or is within the spec's tolerance")
        post_alert(webhook, alert_message(", ".join(sorted(names)), run.run_id, None, checks))
        context.log.info(f"check alert for run {run.run_id} posted to {urlsplit(webhook).hostname}")
        return None

    return check_alerts


def planned_only(run: dg.DagsterRun) -> bool:
    """Whether a run is a dry run: tagged `contentstack/dry_run=true` (every run of `N_dry_run`), or launched
    with a push's `dry_run: true` in its config (an `N_sync` Launchpad run without the tag)."""
    if is_dry_run(run):
        return True
    ops = (run.run_config or {}).get("ops") or {}
    return any(
        isinstance(op, dict) and isinstance(op.get("config"), dict) and op["config"].get("dry_run") is True
        for op in ops.values()
    )


def failure_summary(context: dg.RunFailureSensorContext) -> str:
    """What went wrong, in the words of the first failed step (a dg.Failure's description), else of the run."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        description = data.user_failure_data.description if data.user_failure_data else None
        message = description or (data.error.message if data.error else None)
        if message:
            # "dagster._core.definitions.events.Failure: ..." -> "..."
            first = message.strip().splitlines()[0]
            head, separator, rest = first.partition(": ")
            if separator and "." in head and " " not in head:
                first = rest
            return f"{event.step_key}: {first}"
    return context.failure_event.message or "the run failed"


def failed_checks(instance: dg.DagsterInstance, run: dg.DagsterRun, syncs: set[str]) -> list[dict]:
    """The checks of the run's syncs that did not pass and are beyond their tolerance: an ERROR, or a WARN
    whose share (`failed_share`, `rejected_share`) is above its `threshold` (a WARN with no share counts).
    One entry per check (a range run may report a check per day): the first reported."""
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=10_000
    ).records
    found: dict[tuple, dict] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        key = evaluation.asset_key
        if len(key.path) < 2 or key.path[-2] not in syncs or (key, evaluation.check_name) in found:
            continue
        values = {name: value.value for name, value in evaluation.metadata.items()}
        share = values.get("failed_share", values.get("rejected_share"))
        threshold = values.get("threshold")
        error = evaluation.severity == dg.AssetCheckSeverity.ERROR
        if not error and share is not None and threshold is not None and share <= threshold:
            continue
        found[(key, evaluation.check_name)] = {
            "asset": key.to_user_string(),
            "check": evaluation.check_name,
            "severity": evaluation.severity.value,
            "num_failures": values.get("num_failures"),
            "share": share,
            "threshold": threshold,
        }
    return list(found.values())


def check_line(check: dict) -> str:
    """One check in words: `users/mapped_attributes rows_valid: 2 rows rejected (10.0%, above 5.0%)`."""
    words = COUNT_WORDS.get(check["check"], "failures")
    line = f"{check['asset']} {check['check']}: "
    line += f"{check['num_failures']} {words}" if check["num_failures"] is not None else check["severity"]
    if check["share"] is not None and check["threshold"] is not None:
        line += f" ({check['share']:.1%}, above {check['threshold']:.1%})"
    return line


def alert_message(sync_name: str, run_id: str, error: str | None, checks: list[dict] = ()) -> dict:
    """A Slack incoming-webhook payload (`text` and `blocks`), with the same facts as plain fields. With an
    `error` the run failed; without one, it succeeded with the `checks` listed."""
    base = os.environ.get(WEBSERVER_URL_ENV, "http://localhost:3000").rstrip("/")
    link = f"{base}/runs/{run_id}"
    lines = [check_line(check) for check in checks]
    if error is not None:
        summary = (error or "the run failed").strip().splitlines()[0][:500]
        title = f"contentstack sync `{sync_name}` failed"
        icon = ":rotating_light:"
    else:
        summary = "; ".join(lines)
        lines = []
        title = f"contentstack sync `{sync_name}`: checks beyond their tolerance"
        icon = ":warning:"
    details = "".join(f"\n- {line}" for line in lines)
    message = {
        "text": f"{icon} {title}: {summary}{details} (<{link}|run {run_id[:8]}>)",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{summary}{details}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run <{link}|{run_id}>"}]},
        ],
        "sync": sync_name,
        "run_id": run_id,
        "run_url": link,
        "checks": list(checks),
    }
    if error is not None:
        message["error"] = summary
    return message


def post_alert(webhook: str, message: dict) -> None:
    """POST the message; an error names the webhook's host only (a Slack webhook URL is a secret)."""
    from contentstack_assets.personalize.regions import check_api_url

    host = urlsplit(webhook).hostname or "?"
    try:
        check_api_url(webhook)  # https only, except to this machine
    except ValueError:
        raise ValueError(f"{ALERT_WEBHOOK_ENV} must be an https:// URL (http only to this machine)") from None
    try:
        response = requests.post(webhook, json=message, timeout=10)
        response.raise_for_status()
    except requests.RequestException as error:
        status = getattr(error.response, "status_code", None)
        raise RuntimeError(
            f"posting the alert to {host} failed: {type(error).__name__}"
            + (f" (HTTP {status})" if status else "")
        ) from None
