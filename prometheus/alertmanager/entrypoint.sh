#!/bin/sh
# Entrypoint of the stack's Alertmanager (docker-compose.yaml): starts
# Alertmanager with alertmanager.yml when a Discord webhook URL is set, and
# with alertmanager.yml minus its Discord lines when none is, so that an
# unset ALERT_DISCORD_WEBHOOK_URL means "alerts are shown, not sent" rather
# than a notification failing every few minutes.
#
# Environment (defaults are the paths docker-compose.yaml mounts):
#   ALERTMANAGER_CONFIG          /etc/countdown/alertmanager/alertmanager.yml
#   ALERT_DISCORD_WEBHOOK_URL_FILE
#                                /run/countdown/discord_webhook_url, written by
#                                the setup service (empty: no Discord)
#   ALERTMANAGER_RUNTIME_DIR     where the Discord-less copy goes (/tmp)
#   ALERTMANAGER_BIN             /bin/alertmanager
# Arguments go to Alertmanager.
set -eu

config=${ALERTMANAGER_CONFIG:-/etc/countdown/alertmanager/alertmanager.yml}
url_file=${ALERT_DISCORD_WEBHOOK_URL_FILE:-/run/countdown/discord_webhook_url}
runtime_dir=${ALERTMANAGER_RUNTIME_DIR:-/tmp}
bin=${ALERTMANAGER_BIN:-/bin/alertmanager}

url=
if [ -r "$url_file" ]; then
  url=$(tr -d ' \t\r\n' < "$url_file")
fi
case $url in
  https://* | http://*)
    echo "alertmanager: alerts go to the Discord webhook of ALERT_DISCORD_WEBHOOK_URL" >&2
    ;;
  *)
    echo "alertmanager: ALERT_DISCORD_WEBHOOK_URL is not set: alerts are kept and shown (http://localhost:9093, Prometheus, Grafana), and sent nowhere" >&2
    sed '/# BEGIN discord/,/# END discord/d' "$config" > "$runtime_dir/alertmanager.yml"
    config=$runtime_dir/alertmanager.yml
    ;;
esac

exec "$bin" --config.file="$config" "$@"
