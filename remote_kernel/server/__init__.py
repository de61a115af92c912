"""The embedded server: the Backend.AI API (docs/PROTOCOL.md), plus our extensions,
implemented on local Jupyter kernels.  Start it with ``remote-kernel serve`` or in-process
with :func:`remote_kernel.server.app.start`."""
