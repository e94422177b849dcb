export class ViewerCommerce {
  constructor(opts) { Object.assign(this, opts); }
  start() {}
  refresh() {}
}
