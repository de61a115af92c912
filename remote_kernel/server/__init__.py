"""The embedded server: the Backend.AI API (PROTOCOL.md Part A, plus our Part B extension)
implemented on local Jupyter kernels.  Start it with ``remote-kernel serve`` or in-process
with :func:`remote_kernel.server.app.start`."""
