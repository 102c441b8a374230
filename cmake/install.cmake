# What `cmake --install` puts where (GNUInstallDirs; DESTDIR staging works):
#   bin/       sluice, sluiced, sluice-worker (install rules beside each target)
#   lib/       libsluice.so.0 (SONAME), pkgconfig/sluice.pc, cmake/sluice/ (find_package)
#   include/   sluice/*.h
#   lib/systemd/system/sluiced.service  with this prefix's paths filled in
#   etc/sluice/sluiced.conf             the annotated example config (/etc for prefix /usr)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sluice
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

configure_file(${PROJECT_SOURCE_DIR}/cmake/sluice.pc.in ${PROJECT_BINARY_DIR}/sluice.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sluice.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(sl_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/sluice)
install(EXPORT sluiceTargets NAMESPACE sluice:: DESTINATION ${sl_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/sluiceConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sluiceConfig.cmake INSTALL_DESTINATION ${sl_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sluiceConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sluiceConfig.cmake
              ${PROJECT_BINARY_DIR}/sluiceConfigVersion.cmake DESTINATION ${sl_cmake_dir})

# The unit names absolute paths, so it is written at install time for the
# prefix actually used (`cmake --install --prefix P`, DESTDIR staging too).
# The config goes to /etc/sluice for prefix /usr, else PREFIX/etc/sluice.
install(CODE "
  set(sl_prefix \"\${CMAKE_INSTALL_PREFIX}\")
  set(CMAKE_INSTALL_FULL_BINDIR \"\${sl_prefix}/${CMAKE_INSTALL_BINDIR}\")
  if(sl_prefix STREQUAL \"/usr\")
    set(sl_etc /etc/sluice)
  else()
    set(sl_etc \"\${sl_prefix}/etc/sluice\")
  endif()
  set(SLUICE_CONF_FILE \"\${sl_etc}/sluiced.conf\")
  set(sl_unit \"\$ENV{DESTDIR}\${sl_prefix}/lib/systemd/system/sluiced.service\")
  message(STATUS \"Installing: \${sl_unit}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/deploy/systemd/sluiced.service.in\" \"\${sl_unit}\" @ONLY)
  file(INSTALL \"${PROJECT_SOURCE_DIR}/deploy/sluiced.conf\" DESTINATION \"\${sl_etc}\")
")
