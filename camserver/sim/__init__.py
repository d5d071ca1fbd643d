"""Cameras without hardware: the simulator that speaks the firmware's protocol (simcam.py) and
`make demo`, the server with one simulated camera (demo.py)."""
