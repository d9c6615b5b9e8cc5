"""A trial's checkpoint folder, ``<storage>/<sweep>/trials/<trial_key>/``: keyed by the trial's
identity, so it is found again whatever restarted the trial (Ray retrying a crashed worker, a new
``sweeper run`` after the driver died, ``sweeper train``), and ``run_trial`` resumes from it by
itself. One copy per trial, so Ray's own per-attempt checkpoint copies are not used."""

from __future__ import annotations

import shutil
import tempfile
from sweeper.core.uris import is_remote_storage, storage_folder
from pathlib import Path


class CheckpointStore:
    """The checkpoint folder of one trial under ``trials_root``. Local roots are used in place;
    remote ones (any URI pyarrow reaches: s3://, gs://) are mirrored into a temporary folder and
    uploaded after every checkpoint."""

    def __init__(self, trials_root: str, key: str):
        import pyarrow.fs as pafs

        self.remote = is_remote_storage(trials_root)
        if not self.remote:
            self.local_dir = Path(storage_folder(trials_root), key)
            self.local_dir.mkdir(parents=True, exist_ok=True)
            return
        self.fs, base = pafs.FileSystem.from_uri(trials_root)
        self.remote_dir = f"{base.rstrip('/')}/{key}"
        self.local_dir = Path(tempfile.mkdtemp(prefix=f"sweeper-{key}-"))
        if self.fs.get_file_info(self.remote_dir).type == pafs.FileType.Directory:
            pafs.copy_files(self.remote_dir, str(self.local_dir), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())

    def upload(self) -> None:
        if self.remote:
            import pyarrow.fs as pafs

            self.fs.create_dir(self.remote_dir, recursive=True)
            pafs.copy_files(str(self.local_dir), self.remote_dir, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local_dir, ignore_errors=True)
