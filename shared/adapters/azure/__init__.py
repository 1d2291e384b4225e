"""Azure adapters: Storage Queue, Blob and Table storage, and the Event Hubs producer (`INFERQ_BACKEND=azure`).

Imported only when that backend is chosen, so the embedded backend never loads the Azure SDKs.
"""
