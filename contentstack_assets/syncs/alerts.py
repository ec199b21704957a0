"""Alerts on failed sync runs: `contentstack_failure_alerts`, a run-failure sensor that posts a
Slack-compatible message to the webhook in $CONTENTSTACK_ALERT_WEBHOOK_URL.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import os
from urllib.parse import urlsplit

import dagster as dg
import requests

from contentstack_assets.syncs.runs import syncs_of_run

ALERT_WEBHOOK_ENV = "CONTENTSTACK_ALERT_WEBHOOK_URL"
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"


@dg.run_failure_sensor(
    name="contentstack_failure_alerts",
    monitor_all_code_locations=False,
    description=f"Posts a Slack-compatible message to ${ALERT_WEBHOOK_ENV} when a sync run fails",
    # stopped by default like every schedule and sensor here (the contract): turn it on with the webhook set
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def failure_alerts(context: dg.RunFailureSensorContext):
    webhook = os.environ.get(ALERT_WEBHOOK_ENV)
    if not webhook:
        return dg.SkipReason(f"{ALERT_WEBHOOK_ENV} is not set")
    run = context.dagster_run
    names = syncs_of_run(run)
    if not names:
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} is not a sync run")
    post_alert(webhook, alert_message(", ".join(sorted(names)), run.run_id, failure_summary(context)))
    context.log.info(f"alert for run {run.run_id} posted to {urlsplit(webhook).hostname}")
    return None


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


def alert_message(sync_name: str, run_id: str, error: str | None) -> dict:
    """A Slack incoming-webhook payload (`text` and `blocks`), with the same facts as plain fields."""
    base = os.environ.get(WEBSERVER_URL_ENV, "http://localhost:3000").rstrip("/")
    link = f"{base}/runs/{run_id}"
    summary = (error or "the run failed").strip().splitlines()[0][:500]
    return {
        "text": f":rotating_light: contentstack sync `{sync_name}` failed: {summary} (<{link}|run {run_id[:8]}>)",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*contentstack sync `{sync_name}` failed*\n{summary}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run <{link}|{run_id}>"}]},
        ],
        "sync": sync_name,
        "run_id": run_id,
        "run_url": link,
        "error": summary,
    }


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
