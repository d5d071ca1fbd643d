"""The shared inference service: camserver's detector on NVIDIA Triton (PyTriton), JPEGs in, boxes out.

`python -m camserver.infer` (or `camserver-infer`) runs it; detect/backends/triton_contract.py is the wire contract any
client can use; camserver's own client is camserver/detect/backends/triton.py.
"""
