//! The filesystem calls the sandbox bounds, shadowing wasmtime-wasi's own in the linker.
//!
//! wasmtime-wasi gives a guest as many descriptors as its resource table holds and lets it
//! create files, directories and symbolic links freely inside a granted directory. Here:
//!
//! - `open-at` fails with `insufficient-memory` once the instance holds
//!   `[plugin.limits] max_open_files` files and directories (the granted directories
//!   included), or once every plugin of the process together holds the process-wide budget
//!   (`[runtime] plugin_open_files`, `super::descriptors`): plugins cannot take the process
//!   to its descriptor limit.
//! - `open-at` with `create` (of a file that does not exist), `create-directory-at`,
//!   `symlink-at` and `link-at` fail with `quota` once the granted directory holds
//!   `[plugin.limits] max_inodes` entries (counted by [`super::quota`], shared by every
//!   session of the plugin).
//! - `symlink-at` fails with `not-permitted` unless the grant says `symlinks = true`: a link
//!   the guest cannot follow would still be followed by a host-side reader of the directory.
//!
//! - `write-via-stream` and `append-via-stream` give streams that write into the instance's
//!   buffer (`super::filebuf`): a guest's file write costs a copy, never a system call on
//!   its call. The calls that could see or change what it wrote (`read`, `read-via-stream`,
//!   `write`, `stat`, `stat-at`, `set-size`, `metadata-hash(-at)`, `open-at` with
//!   `truncate`) first wait until the buffer is written out; `sync` and `sync-data` too,
//!   then reach the disk.
//!
//! - Every descriptor call that runs on the blocking pool (`open-at`, `stat`, `read`, `sync`,
//!   `read-directory`, `rename-at`, `unlink-file-at`, ...) fails with `busy` once its granted directory has [`PARKED_MAX`] earlier calls that were
//!   abandoned (their plugin call trapped or hit its deadline) and still have not returned:
//!   a FIFO nobody reads or a hung mount parks at most that many threads of the pool, however
//!   often the plugin restarts into it ([`super::fs_limits::Parked`]).
//!
//! Each refusal is an error code the guest sees (never a trap), counted in the plugin's
//! counters and logged once per session with the key to raise ([`InstanceCtx::refused`]).
//! The descriptor count is exact: each descriptor is noted when it is handed out
//! (`get-directories`, `open-at`) and forgotten when the guest drops it.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, LinkerInstance, Resource, ResourceType};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Advice, DescriptorFlags, DescriptorStat, DirectoryEntryStream, ErrorCode, Host as _,
    HostDescriptor, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsResult};

use super::filebuf::FileBuf;
use super::fs_limits::{Open, PARKED_MAX, Refused, Watch};
use super::store::{InstanceCtx, StoreData};

/// The WASI interfaces shadowed, at the version wasmtime-wasi 48 defines.
const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Shadows the filesystem calls above in `linker`.
pub fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store, rep| {
            let st = store.data_mut();
            st.fs.open.remove(&rep);
            st.table_mut()
                .delete(Resource::<Descriptor>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, StoreData>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let r = open_at(store.data_mut(), fd, path_flags, path, oflags, flags).await;
                Ok((r?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, StoreData>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move { Ok((create_directory_at(store.data_mut(), fd, path).await?,)) })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, StoreData>,
         (fd, old, new): (Resource<Descriptor>, String, String)| {
            Box::new(async move { Ok((symlink_at(store.data_mut(), fd, old, new).await?,)) })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, StoreData>,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(
                async move { Ok((link_at(store.data_mut(), fd, flags, old, new_fd, new).await?,)) },
            )
        },
    )?;
    link_buffered(&mut types)?;
    linker.instance(PREOPENS)?.func_wrap(
        "get-directories",
        |mut store: StoreContextMut<'_, StoreData>, (): ()| {
            Ok((get_directories(store.data_mut())?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Shadows the calls that write through the instance's buffer, or wait for it.
fn link_buffered(types: &mut LinkerInstance<'_, StoreData>) -> wasmtime::Result<()> {
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, StoreData>, (fd, at): (Resource<Descriptor>, u64)| {
            Ok((buffered_stream(store.data_mut(), &fd, Some(at))?,))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, StoreData>, (fd,): (Resource<Descriptor>,)| {
            Ok((buffered_stream(store.data_mut(), &fd, None)?,))
        },
    )?;
    /// Shadows `$name` with wasmtime-wasi's `$method`, called once no more than
    /// [`PARKED_MAX`] calls are parked under its directory ([`watch`]) and, when `$settle`
    /// is true, once the buffer is written out (a call that could see what it holds).
    macro_rules! blocking {
        ($settle:literal, $name:literal, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
            types.func_wrap_async(
                $name,
                |mut store: StoreContextMut<'_, StoreData>, (fd, $($arg,)*): (Resource<Descriptor>, $($ty,)*)| {
                    Box::new(async move {
                        let st = store.data_mut();
                        if $settle {
                            settle(&st.files).await;
                        }
                        let w = match watch(st, &fd)? {
                            Ok(w) => w,
                            Err(e) => return Ok((Err(e),)),
                        };
                        let r: FsResult<$ret> = st.filesystem().$method(fd, $($arg),*).await;
                        w.done();
                        Ok((to_guest(st, r)?,))
                    })
                },
            )?;
        };
    }
    blocking!(true, "[method]descriptor.read", read, (len: u64, at: u64) -> (Vec<u8>, bool));
    blocking!(true, "[method]descriptor.write", write, (buf: Vec<u8>, at: u64) -> u64);
    blocking!(true, "[method]descriptor.stat", stat, () -> DescriptorStat);
    blocking!(true, "[method]descriptor.stat-at", stat_at, (flags: PathFlags, path: String) -> DescriptorStat);
    blocking!(true, "[method]descriptor.set-size", set_size, (size: u64) -> ());
    blocking!(true, "[method]descriptor.sync", sync, () -> ());
    blocking!(true, "[method]descriptor.sync-data", sync_data, () -> ());
    blocking!(true, "[method]descriptor.metadata-hash", metadata_hash, () -> MetadataHashValue);
    blocking!(true, "[method]descriptor.metadata-hash-at", metadata_hash_at, (flags: PathFlags, path: String) -> MetadataHashValue);
    blocking!(false, "[method]descriptor.read-directory", read_directory, () -> Resource<DirectoryEntryStream>);
    blocking!(false, "[method]descriptor.readlink-at", readlink_at, (path: String) -> String);
    blocking!(false, "[method]descriptor.remove-directory-at", remove_directory_at, (path: String) -> ());
    blocking!(false, "[method]descriptor.rename-at", rename_at, (old: String, new_fd: Resource<Descriptor>, new: String) -> ());
    blocking!(false, "[method]descriptor.unlink-file-at", unlink_file_at, (path: String) -> ());
    blocking!(false, "[method]descriptor.set-times", set_times, (atim: NewTimestamp, mtim: NewTimestamp) -> ());
    blocking!(false, "[method]descriptor.set-times-at", set_times_at, (flags: PathFlags, path: String, atim: NewTimestamp, mtim: NewTimestamp) -> ());
    blocking!(false, "[method]descriptor.advise", advise, (offset: u64, len: u64, advice: Advice) -> ());
    types.func_wrap_async(
        "[method]descriptor.read-via-stream",
        |mut store: StoreContextMut<'_, StoreData>, (fd, at): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let st = store.data_mut();
                settle(&st.files).await;
                let r: FsResult<Resource<DynInputStream>> = st.filesystem().read_via_stream(fd, at);
                Ok((to_guest(st, r)?,))
            })
        },
    )?;
    Ok(())
}

/// Waits until what the instance wrote is written out.
async fn settle(files: &FileBuf) {
    if files.pending() > 0 {
        files.settle().await;
    }
}

/// A stream of file `fd` writing into the instance's buffer, at `at` (`None`: appending).
fn buffered_stream(
    st: &mut StoreData,
    fd: &Resource<Descriptor>,
    at: Option<u64>,
) -> GuestResult<Resource<DynOutputStream>> {
    let file = match st.table_mut().get(fd)? {
        Descriptor::File(f) if f.perms.write_not_permitted() => {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok(Err(ErrorCode::IsDirectory)),
    };
    let stream: DynOutputStream = Box::new(st.files.stream(file, at));
    Ok(Ok(st.table_mut().push(stream)?))
}

/// A call's result for the guest: an error code it sees, or a trap.
type GuestResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

/// `r` as the guest sees it.
fn to_guest<T>(st: &mut StoreData, r: FsResult<T>) -> GuestResult<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(st.filesystem().convert_error_code(e)?)),
    }
}

/// Before a call on `fd` that runs on the blocking pool: `busy` (counted, logged once per
/// session) when its granted directory already has [`PARKED_MAX`] abandoned calls still
/// running (see [`super::fs_limits::Parked`]); otherwise a [`Watch`] to mark done when the
/// call returns.
fn watch(st: &mut StoreData, fd: &Resource<Descriptor>) -> GuestResult<Watch> {
    let Some(g) = st.fs.grant_of(fd.rep()) else {
        return Ok(Ok(Watch::none()));
    };
    let handle = match st.table_mut().get(fd)? {
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(d) => d.dir.clone(),
    };
    let grant = &st.fs.grants[g];
    let parked = grant.parked.count();
    if parked >= PARKED_MAX {
        let guest = grant.guest.clone();
        refuse(&st.ctx, Refused::Parked, || {
            format!(
                "{parked} filesystem calls under granted directory {guest} never returned (a FIFO nobody opens for reading, a hung mount): calls there are refused with busy until they return (give the FIFO a reader or remove it, or fix the mount)"
            )
        });
        return Ok(Err(ErrorCode::Busy));
    }
    Ok(Ok(Watch::new(grant.parked.clone(), handle)))
}

/// A second handle on a borrowed descriptor, for a call made before the real one.
fn again(fd: &Resource<Descriptor>) -> Resource<Descriptor> {
    Resource::new_borrow(fd.rep())
}

fn get_directories(st: &mut StoreData) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
    let dirs = st.filesystem().get_directories()?;
    for (fd, name) in &dirs {
        if let Some(g) = st.fs.grants.iter().position(|g| g.guest == *name) {
            let open = Open {
                grant: Some(g),
                _slot: None,
            };
            st.fs.open.insert(fd.rep(), open);
        }
    }
    Ok(dirs)
}

async fn open_at(
    st: &mut StoreData,
    fd: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> GuestResult<Resource<Descriptor>> {
    let max = st.fs.limits.max_open_files;
    if st.fs.open.len() >= max {
        refuse(&st.ctx, Refused::OpenFiles, || {
            format!(
                "plugin holds {max} files and directories open, the most [plugin.limits] max_open_files allows: open-at refused with insufficient-memory (close what it no longer needs, or raise max_open_files)"
            )
        });
        return Ok(Err(ErrorCode::InsufficientMemory));
    }
    let Some(slot) = st.fs.budget.take() else {
        let budget = st.fs.budget.clone();
        refuse(&st.ctx, Refused::Descriptors, || {
            budget.refusal("open-at refused with insufficient-memory")
        });
        return Ok(Err(ErrorCode::InsufficientMemory));
    };
    if oflags.contains(OpenFlags::TRUNCATE) {
        settle(&st.files).await;
    }
    let g = st.fs.grant_of(fd.rep());
    let mut creates = false;
    if oflags.contains(OpenFlags::CREATE)
        && st
            .fs
            .grants
            .get(g.unwrap_or(usize::MAX))
            .is_some_and(|g| g.max_inodes.is_some())
    {
        let w = match watch(st, &fd)? {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        let exists = st
            .filesystem()
            .stat_at(again(&fd), PathFlags::empty(), path.clone())
            .await
            .is_ok();
        w.done();
        if !exists {
            if let Some(e) = inodes_refused(st, g) {
                return Ok(Err(e));
            }
            creates = true;
        }
    }
    let w = match watch(st, &fd)? {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let creating = creates.then(|| st.fs.creating(g));
    let r = st
        .filesystem()
        .open_at(fd, path_flags, path, oflags, flags)
        .await;
    w.done();
    if let Ok(new) = &r {
        let open = Open {
            grant: g,
            _slot: Some(slot),
        };
        st.fs.open.insert(new.rep(), open);
        if let Some(c) = creating {
            c.created();
        }
    }
    to_guest(st, r)
}

async fn create_directory_at(
    st: &mut StoreData,
    fd: Resource<Descriptor>,
    path: String,
) -> GuestResult<()> {
    let g = st.fs.grant_of(fd.rep());
    if let Some(e) = inodes_refused(st, g) {
        return Ok(Err(e));
    }
    let w = match watch(st, &fd)? {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let creating = st.fs.creating(g);
    let r = st.filesystem().create_directory_at(fd, path).await;
    w.done();
    if r.is_ok() {
        creating.created();
    }
    to_guest(st, r)
}

async fn symlink_at(
    st: &mut StoreData,
    fd: Resource<Descriptor>,
    old: String,
    new: String,
) -> GuestResult<()> {
    let g = st.fs.grant_of(fd.rep());
    let grant = g.and_then(|g| st.fs.grants.get(g));
    if !grant.is_some_and(|g| g.symlinks) {
        let guest = grant
            .map_or("its directory", |g| g.guest.as_str())
            .to_owned();
        refuse(&st.ctx, Refused::Symlink, || {
            format!(
                "plugin tried to create a symbolic link {new} -> {old} in {guest}: refused with not-permitted (a host-side reader of the directory would follow it; set symlinks = true on that [[plugin.dir]] to allow links)"
            )
        });
        return Ok(Err(ErrorCode::NotPermitted));
    }
    if let Some(e) = inodes_refused(st, g) {
        return Ok(Err(e));
    }
    let w = match watch(st, &fd)? {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let creating = st.fs.creating(g);
    let r = st.filesystem().symlink_at(fd, old, new).await;
    w.done();
    if r.is_ok() {
        creating.created();
    }
    to_guest(st, r)
}

async fn link_at(
    st: &mut StoreData,
    fd: Resource<Descriptor>,
    flags: PathFlags,
    old: String,
    new_fd: Resource<Descriptor>,
    new: String,
) -> GuestResult<()> {
    let g = st.fs.grant_of(new_fd.rep());
    if let Some(e) = inodes_refused(st, g) {
        return Ok(Err(e));
    }
    let w = match watch(st, &fd)? {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let creating = st.fs.creating(g);
    let r = st.filesystem().link_at(fd, flags, old, new_fd, new).await;
    w.done();
    if r.is_ok() {
        creating.created();
    }
    to_guest(st, r)
}

/// `quota`, counted and logged, if grant `g` is at its entry bound.
fn inodes_refused(st: &StoreData, g: Option<usize>) -> Option<ErrorCode> {
    let (grant, max) = st.fs.inodes_full(g)?;
    let guest = grant.guest.clone();
    refuse(&st.ctx, Refused::Inodes, || {
        format!(
            "granted directory {guest} holds {max} files and directories, the most [plugin.limits] max_inodes allows: creating more refused with quota (remove entries there, or raise max_inodes)"
        )
    });
    Some(ErrorCode::Quota)
}

fn refuse(ctx: &InstanceCtx, what: Refused, why: impl FnOnce() -> String) {
    ctx.refused_fs(what, why);
}
