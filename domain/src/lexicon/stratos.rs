//! The Stratos lexicon documents, embedded from `lexicons/` at the workspace root so the
//! domain validates with exactly the schemas it publishes.

macro_rules! lexicons {
    ($($nsid:literal => $path:literal),* $(,)?) => {
        /// `(NSID, JSON text)` of every `zone.stratos.*` lexicon.
        pub const STRATOS_LEXICONS: &[(&str, &str)] = &[
            $(($nsid, include_str!(concat!("../../../lexicons/", $path)))),*
        ];
    };
}

lexicons! {
    "zone.stratos.actor.enrollment" => "zone/stratos/actor/enrollment.json",
    "zone.stratos.boundary.defs" => "zone/stratos/boundary/defs.json",
    "zone.stratos.defs" => "zone/stratos/defs.json",
    "zone.stratos.feed.post" => "zone/stratos/feed/post.json",
    "zone.stratos.enrollment.status" => "zone/stratos/enrollment/status.json",
    "zone.stratos.enrollment.unenroll" => "zone/stratos/enrollment/unenroll.json",
    "zone.stratos.identity.resolveEnrollments" => "zone/stratos/identity/resolveEnrollments.json",
    "zone.stratos.repo.hydrateRecord" => "zone/stratos/repo/hydrateRecord.json",
    "zone.stratos.repo.hydrateRecords" => "zone/stratos/repo/hydrateRecords.json",
    "zone.stratos.repo.importRepo" => "zone/stratos/repo/importRepo.json",
    "zone.stratos.server.listDomains" => "zone/stratos/server/listDomains.json",
    "zone.stratos.sync.getRepo" => "zone/stratos/sync/getRepo.json",
    "zone.stratos.sync.subscribeRecords" => "zone/stratos/sync/subscribeRecords.json",
    "zone.stratos.admin.addBoundary" => "zone/stratos/admin/addBoundary.json",
    "zone.stratos.admin.removeBoundary" => "zone/stratos/admin/removeBoundary.json",
    "zone.stratos.admin.setBoundaries" => "zone/stratos/admin/setBoundaries.json",
}
