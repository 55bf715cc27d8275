"""The management API behind the console, under /admin/v1: admin keys only, one JSON error shape."""
