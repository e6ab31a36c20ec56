"""vmvault: a backup service for virtual machines on libvirt KVM/QEMU hosts."""

__version__ = "0.1.0"
