"""The pure core: values in, values out (the model, the planner, durations, errors, the clock).

Nothing here reads a file, a socket, a database or the time of day on its own; everything above
it may import it, it imports nothing of the layers above.
"""
