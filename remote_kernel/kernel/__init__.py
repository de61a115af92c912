"""The bridge kernel: ``RemoteKernel`` runs every cell on a remote Backend.AI-compatible session."""

from remote_kernel.kernel.outputs import register_media_type

__all__ = ["RemoteKernel", "register_media_type"]


def __getattr__(name):
    # Lazy: importing the registry must not pull in ipykernel/zmq.
    if name == "RemoteKernel":
        from remote_kernel.kernel.kernel import RemoteKernel

        return RemoteKernel
    raise AttributeError(name)
