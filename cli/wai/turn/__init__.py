"""Turns: `planner.TurnPlanner` is where every command that runs a turn starts (resolve, plan,
request, play, record); `run.stream_turn` streams a backend's events into a sink; `play.play_turn`
says on stderr what went wrong or was cut short."""
