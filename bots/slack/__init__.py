"""The Slack adapter: a slack-bolt app that parses Slack payloads, calls `bots.core.BotCore`, formats replies.

Entry points: `bots.slack.app.create_app`, `bots.slack.http.slack_router` (HTTP mode, FastAPI) and
`bots.slack.socket_mode.SocketModeRunner` (Socket Mode). See docs/slack.md.
"""
